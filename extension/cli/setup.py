"""`cloudlora setup [--delete] [--yes]`: create or update the AWS stack and build the trainer image, or remove it."""
from __future__ import annotations

import argparse

from .. import settings as settings_mod
from .output import add_aws_flags, add_json_flag, aws_flags, confirm, print_json


def register(sub) -> None:
    p = sub.add_parser("setup", help="create or update the AWS stack (bucket, role, image repository) and build the "
                                     "trainer image in the cloud; --delete removes it",
                       description="AWS in one step. Needs the permissions in cloud_backend/infra/user-policy.json. "
                                   "A re-run changes nothing when nothing changed; the image is rebuilt only when "
                                   "the trainer sources changed.")
    p.add_argument("--delete", action="store_true", help="delete the stack (asks before emptying the bucket)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before emptying the bucket")
    p.add_argument("--rebuild", action="store_true", help="rebuild the trainer image even if its tag exists")
    add_aws_flags(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..aws import setup as aws_setup

    s = settings_mod.resolve(aws_flags(args))
    progress = (lambda message: None) if args.json else (lambda message: print(message, flush=True))
    if args.delete:
        done = aws_setup.delete_stack(s, confirm=lambda q: confirm(q, args.yes), progress=progress)
        if args.json:
            print_json({"deleted": done})
        return 0 if done else 1
    result = aws_setup.setup(s, progress=progress, force_build=args.rebuild)
    if args.json:
        print_json(result.as_dict())
    return 0
