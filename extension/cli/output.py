"""Output helpers shared by the commands: --json, tables, confirmation."""
from __future__ import annotations

import json
import sys
from typing import Iterable, Sequence

from .. import display


def add_json_flag(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def add_aws_flags(parser) -> None:
    """--profile / --region, which override the settings for this command (read them with aws_flags(args))."""
    parser.add_argument("--profile", help="AWS profile (default: settings / AWS_PROFILE)")
    parser.add_argument("--region", help="AWS region (default: settings / AWS_REGION / the profile's)")


def aws_flags(args) -> dict:
    return {"aws_profile": args.profile, "region": args.region}


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def print_record(record: dict, as_json: bool) -> None:
    """One object (a manifest, a job): JSON, or one `key: value` line per field."""
    if as_json:
        print_json(record)
    else:
        for key, value in record.items():
            print(f"{key}: {display.name(value)}")  # names from files: no forged lines


def print_table(rows: Iterable[Sequence], headers: Sequence[str]) -> None:
    rows = [[("" if c is None else display.name(c)) for c in r] for r in rows]  # a name cannot add a row
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def confirm(question: str, assume_yes: bool) -> bool:
    """Asks on a terminal; without one (and without --yes) the answer is no."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        print(f"{question} Not confirmed (no terminal): pass --yes.", file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
