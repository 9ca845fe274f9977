"""`cloudlora config defaults|check|format`: the Kohya TOML, validated by the same functions the train tab uses."""
from __future__ import annotations

import sys
from pathlib import Path

from cloudlora_backend.trainer.config import train_config as kohya_config

from ..errors import UserError
from .output import add_json_flag, print_json

FAMILIES = ["sd15", "sdxl", "flux"]


def register(subparsers) -> None:
    p = subparsers.add_parser("config", help="Kohya TOML training configs: defaults, check, format")
    sub = p.add_subparsers(dest="config_command", metavar="ACTION")

    d = sub.add_parser("defaults", help="print the commented default config for a model family")
    d.add_argument("--family", choices=FAMILIES, default="sd15")
    d.set_defaults(func=cmd_defaults)

    c = sub.add_parser("check", help="validate a config; exit 1 when it has errors")
    c.add_argument("file")
    c.add_argument("--family", choices=FAMILIES, default=None, help="check against this family's rules")
    add_json_flag(c)
    c.set_defaults(func=cmd_check)

    f = sub.add_parser("format", help="validate and normalise a config (comments kept); print it or --write it")
    f.add_argument("file")
    f.add_argument("--family", choices=FAMILIES, default=None)
    f.add_argument("--write", action="store_true", help="rewrite FILE in place")
    f.set_defaults(func=cmd_format)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _read(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"Config file {p} does not exist.", fix="pass the path of a .toml file")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{p} is not UTF-8 text ({err}).", fix="save the config as UTF-8") from err


def cmd_defaults(args) -> int:
    sys.stdout.write(kohya_config.default_toml(args.family))
    return 0


def cmd_check(args) -> int:
    report = kohya_config.check(_read(args.file), args.family)
    if args.json:
        print_json(report.as_dict())
    else:
        for e in report.errors:
            print(f"error: {e}")
        for w in report.warnings:
            print(f"warning: {w}")
        if report.ok:
            print(f"{args.file}: ok" + (f" ({len(report.warnings)} warnings)" if report.warnings else ""))
    return 0 if report.ok else 1


def cmd_format(args) -> int:
    try:
        out = kohya_config.format_toml(_read(args.file), args.family)
    except kohya_config.ConfigError as err:
        raise UserError(str(err), fix="fix the keys above (`cloudlora config defaults` shows valid values)") from err
    if args.write:
        Path(args.file).write_text(out, encoding="utf-8")
        print(f"formatted {args.file}")
    else:
        sys.stdout.write(out)
    return 0
