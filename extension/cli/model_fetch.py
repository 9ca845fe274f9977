"""`cloudlora model fetch SOURCE` and `cloudlora model bases`: a base model from Hugging Face or an https URL into the
checkpoint folder and the store, in one step (the same function as the Checkpoints panel's Fetch and the REST route).
"""
from __future__ import annotations

import argparse
import getpass
import sys

from ..assets import hub_token, known_bases, model_fetch, models
from ..assets.transfer import Cancelled, format_bytes
from ..errors import UserError
from .output import add_json_flag, print_json, print_table


def register(msub) -> None:
    keys = ", ".join(b.key for b in known_bases.BASES)
    f = msub.add_parser(
        "fetch", help="download a base model (Hugging Face repo, URL, or a well-known base) and upload it",
        description="Downloads a checkpoint into the checkpoint folder (the WebUI's models/Stable-diffusion, or the "
        "data folder standalone), resumable and checked against the hub's sha256, then checks its family and "
        f"uploads it to the store. SOURCE: org/repo (with --file), an https URL, or one of: {keys} "
        "(see `cloudlora model bases`). A diffusers folder repo (model_index.json, no single-file checkpoint) comes "
        "whole, its pipeline's files only, into models/diffusers/<repo name>.")
    f.add_argument("source", help=f"org/repo, org/repo/FILE, an https URL, or {keys}")
    f.add_argument("--file", help="the file in the repo (default: the repo's single-file checkpoint, else its "
                   "diffusers folder)")
    f.add_argument("--revision", help="branch, tag or commit (default: main)")
    f.add_argument("--name", help="name in the store (default: the base's key, or the file name)")
    f.add_argument("--family", choices=models.FAMILIES, help="only when it cannot be read from the file")
    f.add_argument("--dest", metavar="DIR", help="download folder (default: the checkpoint folder)")
    f.add_argument("--token-stdin", action="store_true",
                   help="read a Hugging Face token from stdin and keep it (OS keyring, else the hub's token file)")
    f.add_argument("--no-upload", action="store_true", help="download only")
    add_json_flag(f)
    f.set_defaults(func=run_fetch)
    b = msub.add_parser("bases", help="well-known base models, with family, size and licence")
    add_json_flag(b)
    b.set_defaults(func=run_bases)


def run_bases(args: argparse.Namespace) -> int:
    if args.json:
        print_json({"bases": [b.as_dict() for b in known_bases.BASES]})
        return 0
    print_table([(b.key, b.label, models.FAMILY_LABELS[b.family], f"about {format_bytes(b.size + b.parts_size)}",
                  b.licence + (" (gated: accept it on the hub)" if b.gated else "")) for b in known_bases.BASES],
                ["KEY", "MODEL", "FAMILY", "SIZE", "LICENCE"])
    print("Fetch one: cloudlora model fetch KEY")
    return 0


def _needs_token(err: UserError) -> bool:
    return "needs a Hugging Face token" in err.message


def run_fetch(args: argparse.Namespace) -> int:
    from .progress_bar import ProgressBar, open_store

    token = ""
    if args.token_stdin:
        token = sys.stdin.readline().strip()
        if not token:
            raise UserError("--token-stdin was given but stdin held no token.", "echo $TOKEN | cloudlora model "
                            "fetch ... --token-stdin")
    store = None if args.no_upload else open_store()
    bar = ProgressBar()
    call = dict(file=args.file, revision=args.revision, name=args.name, family=args.family, dest_dir=args.dest,
                upload=not args.no_upload, progress=bar)
    try:
        try:
            result = model_fetch.fetch_model(store, args.source, token=token or None, **call)
        except UserError as err:
            if token or not _needs_token(err) or not sys.stdin.isatty():
                raise
            bar.close()
            print(f"{err.message}\n{err.fix}", file=sys.stderr)
            token = getpass.getpass("Hugging Face token (input hidden; empty to stop): ").strip()
            if not token:
                return 1
            result = model_fetch.fetch_model(store, args.source, token=token, **call)
    except (Cancelled, KeyboardInterrupt):
        bar.close()
        print("Interrupted: run the same command again to resume (only the missing bytes are downloaded).",
              file=sys.stderr)
        return 130
    bar.close()
    if token:  # it worked (or got past the gate): keep it where the hub's tools find it, never in the settings
        result["token_saved_to"] = hub_token.save(token)
    if args.json:
        print_json(result)
        return 0
    got = "already downloaded" if result["already_downloaded"] else (
        f"{format_bytes(result['downloaded_bytes'])} downloaded"
        + (f", resumed at {format_bytes(result['resumed_from'])}" if result["resumed_from"] else ""))
    check = ", sha256 checked against the hub" if result["sha256_checked"] else ""
    print(f"Fetched {result['path']} ({got}{check}).")
    for part, path in result["parts"].items():
        print(f"  {part}: {path}")
    if result.get("token_saved_to"):
        print(f"Token kept in {result['token_saved_to']}.")
    if not args.no_upload:
        if result.get("deduplicated"):
            print(f"Already in the store as '{result['name']}' ({result['family']}).")
        else:
            print(f"Uploaded '{result['name']}' ({models.FAMILY_LABELS.get(result['family'], result['family'])}) to "
                  f"the store; train on it with --model {result['name']}.")
    return 0
