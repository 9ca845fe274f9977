"""`cloudlora model fetch|bases|upload|list|show|download|rm`: checkpoints in the store (the same functions as the
Checkpoints panel)."""
from __future__ import annotations

import argparse
import sys

from ..assets import models
from ..assets.manifests import broken_text
from ..assets.transfer import Cancelled, format_bytes
from ..errors import UserError
from .output import add_json_flag, confirm, print_json, print_record, print_table
from .progress_bar import ProgressBar, open_store


def register(sub) -> None:
    p = sub.add_parser("model", help="checkpoints in the store: fetch, bases, upload, list, show, download, rm")
    msub = p.add_subparsers(dest="model_command", metavar="ACTION")
    from . import model_fetch

    model_fetch.register(msub)
    up = msub.add_parser("upload", help="upload a checkpoint (.safetensors, or .ckpt with --family); resumable, "
                                        "deduplicated")
    up.add_argument("path", help="the checkpoint file")
    up.add_argument("--name", help="name in the store (default: the file name)")
    up.add_argument("--family", choices=models.FAMILIES,
                    help="sd15|sd2|sdxl|flux; read from the safetensors header when left out (required for .ckpt)")
    for flag, part in (("--clip-l", "CLIP-L text encoder"), ("--t5xxl", "T5-XXL text encoder"),
                       ("--ae", "autoencoder")):
        up.add_argument(flag, metavar="FILE", help=f"FLUX.1: the {part} file, for a checkpoint that holds only the "
                                                   "transformer (flux1-dev.safetensors)")
    add_json_flag(up)
    up.set_defaults(func=run_upload)
    ls = msub.add_parser("list", help="the checkpoints in the store, with the space they take")
    add_json_flag(ls)
    ls.set_defaults(func=run_list)
    show = msub.add_parser("show", help="one checkpoint's manifest")
    show.add_argument("name")
    add_json_flag(show)
    show.set_defaults(func=run_show)
    get = msub.add_parser("download", help="copy a checkpoint from the store to a folder")
    get.add_argument("name")
    get.add_argument("dest", nargs="?", default=".", help="folder (default: the current one)")
    add_json_flag(get)
    get.set_defaults(func=run_download)
    rm = msub.add_parser("rm", help="delete a checkpoint from the store")
    rm.add_argument("name")
    rm.add_argument("--yes", "-y", action="store_true", help="do not ask")
    add_json_flag(rm)
    rm.set_defaults(func=run_rm)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_upload(args: argparse.Namespace) -> int:
    store = open_store()
    bar = ProgressBar()
    try:
        result = models.upload_model(store, args.path, name=args.name, family=args.family, progress=bar,
                                     parts={"clip_l": args.clip_l, "t5xxl": args.t5xxl, "ae": args.ae})
    except (Cancelled, KeyboardInterrupt):
        bar.close()
        print("Interrupted: run the same command again to resume (only the missing parts are sent).",
              file=sys.stderr)
        return 130
    bar.close()
    if args.json:
        print_json(result)
    elif result["deduplicated"]:
        print(f"Already in the store as '{result['name']}' ({result['family']}, sha256 {result['sha256'][:12]}): "
              "0 bytes sent.")
    else:
        print(f"Uploaded '{result['name']}' ({result['family']}, {format_bytes(result['size'])}, "
              f"sha256 {result['sha256'][:12]}) to {store.uri(result['file'])}; {format_bytes(result['bytes_sent'])} "
              "sent.")
    return 0


def run_list(args: argparse.Namespace) -> int:
    store = open_store()
    broken: list = []
    items = models.list_models(store, broken)
    total = sum(int(m.get("size", 0)) for m in items)
    if args.json:
        print_json({"store": store.uri(""), "models": items, "total_bytes": total, "broken": broken})
        return 0
    if broken:
        print(f"warning: {broken_text(broken, 'model')}", file=sys.stderr)
    if not items:
        print(f"No models in {store.uri('models/')}. Upload one: cloudlora model upload PATH")
        return 0
    print_table([(m["name"], m.get("family", ""), format_bytes(int(m.get("size", 0))), m.get("sha256", "")[:12],
                  m.get("created", "")) for m in items], ["NAME", "FAMILY", "SIZE", "SHA256", "CREATED"])
    print(f"{len(items)} model(s), {format_bytes(total)} in {store.uri('models/')}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    print_record(models.get_model(open_store(), args.name), args.json)
    return 0


def run_download(args: argparse.Namespace) -> int:
    from ..assets import model_folder

    bar = ProgressBar()
    store = open_store()
    manifest = models.get_model(store, args.name)
    if manifest.get("format") == "diffusers":  # a folder: every file under its prefix
        path = model_folder.download_folder(store, manifest, args.dest, progress=bar)
    else:
        path = models.download_model(store, args.name, args.dest, progress=bar)
    bar.close()
    if args.json:
        print_json({"name": args.name, "path": str(path)})
    else:
        print(f"Downloaded '{args.name}' to {path}")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    store = open_store()
    try:
        manifest = models.get_model(store, args.name)
        what = f"model '{args.name}' ({format_bytes(int(manifest.get('size', 0)))})"
        partial = False
    except UserError:
        # An interrupted upload leaves its name claim (and, locally, the file so far) but no manifest.
        leftovers = sum(1 for _ in store.list(f"models/{models.check_name(args.name)}/"))
        if not leftovers:
            raise
        what = f"the half-uploaded model '{args.name}' ({leftovers} object(s), no manifest)"
        partial = True
    if not confirm(f"Delete {what} from {store.uri('models/')}?", args.yes):
        return 1
    n = models.delete_model(store, args.name, force=partial)
    if args.json:
        print_json({"deleted": args.name, "objects": n})
    else:
        print(f"Deleted model '{args.name}' ({n} objects).")
    return 0
