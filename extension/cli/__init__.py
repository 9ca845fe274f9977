"""`cloudlora`: every action of the tabs as a command. Exit 0 ok, 1 user-fixable problem, 2 usage (141 when the
reader of the output went away, e.g. `cloudlora jobs | head -1`: quietly, like any Unix tool).

Each command group lives in its own module here and exposes `register(subparsers)`; the parser adds
`func` (called with the parsed args, returns an exit code or None).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__
from .. import display
from ..errors import UserError

# The command modules, in --help order. Each defines register(subparsers).
COMMAND_MODULES = ["doctor", "setup", "models", "datasets", "config", "train", "jobs", "lora", "tiny", "ui"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloudlora",
        description="Cloud LoRA Trainer: train Kohya-compatible LoRAs on SageMaker or this machine.",
    )
    parser.add_argument("--version", action="version", version=f"cloudlora {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":
                continue  # that command has not landed yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    _tolerant_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then handled below
    except BrokenPipeError:
        _quiet_stdout()
        return 141
    except UserError as err:
        print(f"error: {display.message(err.message)}", file=sys.stderr)  # names in it: no forged lines
        if err.fix:
            print(f"fix: {err.fix}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def _tolerant_output() -> None:
    """A character the output's encoding lacks (`·` redirected under a Windows OEM code page) prints as `?`,
    instead of raising UnicodeEncodeError in the middle of a listing."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream.errors == "strict":  # stderr's default backslashreplace is tolerant already
                stream.reconfigure(errors="replace")
        except (AttributeError, ValueError, OSError):  # not a TextIOWrapper (a test's StringIO), or closed
            pass


def _quiet_stdout() -> None:
    """The reader closed the pipe: send what is left to /dev/null, so the exit flush raises nothing either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
