"""`cloudlora doctor`: one line per check (ok / problem / warn / skip) and the fix; exit 1 on any problem.

Only what the chosen backend needs can be a problem: with Local, missing AWS is a "skip" line, not exit 1."""
from __future__ import annotations

import argparse

from .. import settings as settings_mod
from ..doctor import has_problem, run_checks
from .output import add_aws_flags, add_json_flag, aws_flags, print_json

_MARK = {"ok": "ok     ", "problem": "PROBLEM", "warn": "warn   ", "skip": "skip   "}


def register(sub) -> None:
    p = sub.add_parser("doctor", help="check Python, the local trainer, GPU, AWS credentials, region, bucket, role, "
                                      "image and quotas; print the fix for each problem",
                       description="Checks everything training needs. Exit 0 when the chosen backend has everything "
                                   "it needs (with Local, AWS is information), 1 otherwise.")
    p.add_argument("--backend", choices=["local", "sagemaker"],
                   help="check what this backend needs (default: the settings' backend)")
    p.add_argument("--instance-type", action="append", dest="instance_types", metavar="TYPE",
                   help="SageMaker training instance type whose quota to check (repeatable; default: the setting)")
    add_aws_flags(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    s = settings_mod.resolve({**aws_flags(args), "backend": args.backend})
    checks = run_checks(s, instance_types=args.instance_types)
    bad = has_problem(checks)
    if args.json:
        print_json({"ok": not bad, "checks": [c.to_dict() for c in checks]})
        return 1 if bad else 0
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{_MARK.get(c.status, c.status)}  {c.name.ljust(width)}  {c.detail}")
        if c.fix and c.status in ("problem", "warn"):
            print(f"{'':7}  {'':{width}}  fix: {c.fix}")
    problems = sum(c.status == "problem" for c in checks)
    print(f"\n{problems} problem(s)." if bad else "\nNo problems found.")
    return 1 if bad else 0
