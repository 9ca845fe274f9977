"""`cloudlora dataset check|upload|list|show|rm` (and `caption|tags`: cli/captions.py): Kohya datasets (the same
functions as the Datasets panel)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import display
from ..assets import dataset_import, datasets
from ..assets.dataset_check import check_dataset
from ..assets.manifests import broken_text
from ..assets.models import check_name
from ..assets.transfer import Cancelled, format_bytes
from ..errors import UserError
from . import captions
from .progress_bar import ProgressBar, open_store
from .output import add_json_flag, confirm, print_json, print_record, print_table


def register(sub) -> None:
    p = sub.add_parser("dataset", help="Kohya datasets: check, upload, list, show, rm, caption, tags")
    dsub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    check = dsub.add_parser("check", help="validate a dataset folder (or .zip); exit 1 when it has errors")
    check.add_argument("path", help="a folder holding N_trigger folders, one such folder, or a .zip")
    add_json_flag(check)
    check.set_defaults(func=run_check)
    wrap = dsub.add_parser("wrap", help="a folder of images, copied as a dataset: <new folder>/<repeats>_<trigger>/ "
                                        "(the folder itself is left as it is)")
    wrap.add_argument("path", help="the folder holding the images")
    wrap.add_argument("--trigger", help="the trigger word (default: from the folder's name)")
    wrap.add_argument("--repeats", type=int, help="repeats per epoch (default: 10, or the number in the name)")
    wrap.set_defaults(func=run_wrap)
    up = dsub.add_parser("upload", help="check, then upload a dataset (refused when the check has errors); "
                                        "a re-run sends only what is missing")
    up.add_argument("path", help="a folder holding N_trigger folders, one such folder, or a .zip")
    up.add_argument("--name", help="name in the store (default: the folder name)")
    add_json_flag(up)
    up.set_defaults(func=run_upload)
    ls = dsub.add_parser("list", help="the datasets in the store, with the space they take")
    add_json_flag(ls)
    ls.set_defaults(func=run_list)
    show = dsub.add_parser("show", help="one dataset's manifest")
    show.add_argument("name")
    add_json_flag(show)
    show.set_defaults(func=run_show)
    rm = dsub.add_parser("rm", help="delete a dataset from the store")
    rm.add_argument("name")
    rm.add_argument("--yes", "-y", action="store_true", help="do not ask")
    add_json_flag(rm)
    rm.set_defaults(func=run_rm)
    captions.add_actions(dsub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _folder(path: str) -> Path:
    """A .zip is extracted safely into a new folder first (the zip itself is untouched)."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix.lower() == ".zip":
        root = dataset_import.import_zip(p)
        print(f"Extracted {display.name(p.name)} into {display.name(root)}", file=sys.stderr)
        return root
    return p


def run_check(args: argparse.Namespace) -> int:
    with dataset_import.extracted_for_check(args.path) as folder:  # a zip's extraction goes again afterwards
        report = check_dataset(folder)
    if args.json:
        data = report.to_dict()
        data.pop("items")
        print_json(data)
    else:
        print(report.text())
    return 0 if report.ok else 1


def run_wrap(args: argparse.Namespace) -> int:
    root = dataset_import.wrap_folder(args.path, trigger=args.trigger, repeats=args.repeats)
    report = check_dataset(root)
    print(report.text())
    print(f"\nThe dataset is {root} (a copy). Upload it: cloudlora dataset upload {root} --name NAME")
    return 0 if report.ok else 1


def run_upload(args: argparse.Namespace) -> int:
    store = open_store()
    bar = ProgressBar()
    try:
        result = datasets.upload_dataset(store, _folder(args.path), name=args.name, progress=bar)
    except (Cancelled, KeyboardInterrupt):
        bar.close()
        print("Interrupted: run the same command again to resume (only missing files are sent).", file=sys.stderr)
        return 130
    bar.close()
    if args.json:
        print_json(result)
    elif result["deduplicated"]:
        print(f"Dataset '{result['name']}' is already in the store, unchanged: 0 bytes sent.")
    else:
        print(f"Uploaded dataset '{result['name']}': {result['images']} images, {result['images_per_epoch']} "
              f"images x repeats per epoch, triggers {', '.join(result['triggers'])}; {result['files_sent']} "
              f"file(s) sent ({format_bytes(result['bytes_sent'])}), {result['files_skipped']} already there.")
    if result.get("rename_note"):
        print(f"note: {result['rename_note']}", file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace) -> int:
    store = open_store()
    broken: list = []
    items = datasets.list_datasets(store, broken)
    total = sum(int(d.get("size", 0)) for d in items)
    if args.json:
        print_json({"store": store.uri(""), "datasets": items, "total_bytes": total, "broken": broken})
        return 0
    if broken:
        print(f"warning: {broken_text(broken, 'dataset')}", file=sys.stderr)
    if not items:
        print(f"No datasets in {store.uri('datasets/')}. Upload one: cloudlora dataset upload PATH")
        return 0
    print_table([(d["name"], d.get("images", ""), d.get("images_per_epoch", ""), ", ".join(d.get("triggers", [])),
                  format_bytes(int(d.get("size", 0))), d.get("created", "")) for d in items],
                ["NAME", "IMAGES", "PER EPOCH", "TRIGGERS", "SIZE", "CREATED"])
    print(f"{len(items)} dataset(s), {format_bytes(total)} in {store.uri('datasets/')}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    print_record(datasets.get_dataset(open_store(), args.name), args.json)
    return 0


def run_rm(args: argparse.Namespace) -> int:
    store = open_store()
    try:
        manifest = datasets.get_dataset(store, args.name)
        what = f"dataset '{args.name}' ({manifest.get('file_count', '?')} files)"
        partial = False
    except UserError:
        # An interrupted upload leaves files but no manifest (it is written last): let the user clear them too.
        leftovers = sum(1 for _ in store.list(f"datasets/{check_name(args.name, 'dataset')}/"))
        if not leftovers:
            raise
        what = f"the half-uploaded dataset '{args.name}' ({leftovers} files, no manifest)"
        partial = True
    if not confirm(f"Delete {what} from {store.uri('datasets/')}?", args.yes):
        return 1
    n = datasets.delete_dataset(store, args.name, force=partial)
    if args.json:
        print_json({"deleted": args.name, "objects": n})
    else:
        print(f"Deleted dataset '{args.name}' ({n} objects).")
    return 0
