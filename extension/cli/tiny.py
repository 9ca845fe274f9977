"""`cloudlora make-tiny-model`: a random-weight SD1.5/SDXL/FLUX.1 checkpoint (real layer layout, tiny widths).

Building it needs torch and diffusers, which live in the trainer's environment, not the WebUI's. When this
interpreter lacks them, the command hands over to the trainer module in the configured trainer interpreter
(`trainer_python` setting / CLOUDLORA_TRAINER_PYTHON) or the local backend's managed venv, so it works from either
environment. Before any job that venv does not exist yet: `--setup` (or yes on a terminal) creates it here, the same
one the first local job would create, instead of the command refusing.
"""
from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

from .. import bootstrap, processes
from ..errors import UserError

ARCHES = ("sd15", "sdxl", "flux")
# What building a model needs here, with the oldest versions the trainer supports (see pyproject's [trainer]).
NEEDS = {"torch": (2, 1), "diffusers": (0, 35), "transformers": (4, 48), "safetensors": (0, 4)}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "make-tiny-model",
        help="write a random-weight SD1.5/SDXL/FLUX.1 checkpoint with the real layer layout (for smoke runs and tests)",
        description="Writes a tiny random-weight checkpoint in the A1111 single-file layout (FLUX.1: the all-in-one "
        "layout Forge loads). Same blocks and layers as the real model (LoRA key sets are identical), tiny widths: "
        "about 11 MB (sd15), 30 MB (sdxl) or 12 MB (flux).",
    )
    p.add_argument("--arch", required=True, choices=ARCHES, help="model family to imitate")
    p.add_argument("out", metavar="OUT.safetensors", help="file to write")
    p.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same file)")
    p.add_argument("--layout", choices=("all-in-one", "parts"), default="all-in-one",
                   help="flux only: all-in-one (one file, as Forge loads it) or parts (OUT holds the transformer in "
                        "BFL's layout; clip_l.safetensors, t5xxl_fp16.safetensors and ae.safetensors go beside it)")
    p.add_argument("--setup", action="store_true",
                   help="create the trainer environment first when it does not exist yet (the one the first local "
                        "job creates: torch and the trainer's packages, a few GB)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def _version(name: str) -> tuple[int, ...] | None:
    try:
        raw = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    parts = []
    for piece in raw.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def missing_trainer_packages() -> list[str]:
    """The trainer packages this interpreter lacks or has too old (checked without importing them)."""
    out = []
    for name, oldest in NEEDS.items():
        have = _version(name)
        if have is None or have < oldest:
            found = f" (found {'.'.join(map(str, have))})" if have else ""
            out.append(f"{name}>={'.'.join(map(str, oldest))}{found}")
    return out


def _trainer_python() -> tuple[str, str]:
    """(interpreter, "" or why it cannot be used): the configured one, else the local backend's managed venv."""
    from .. import settings

    resolved = settings.resolve()
    try:
        from ..jobs.local_backend import trainer_env
    except ImportError:  # the jobs package is optional here: fall back to the setting alone
        return resolved.trainer_python, ("" if resolved.trainer_python else "no trainer Python is configured")
    python, ready = trainer_env.resolve(resolved)
    if ready:
        return python, ""
    return "", (f"no trainer Python is configured and the managed trainer environment ({trainer_env.venv_dir()}) "
                "is not set up yet (the first local training job creates it)")


def run(args) -> int:
    out = Path(args.out).expanduser()
    if out.suffix.lower() != ".safetensors":
        raise UserError(f"{out} must end in .safetensors (the tiny model is written as a safetensors file).",
                        fix=f"use e.g. {out.with_suffix('.safetensors')}")
    if args.layout != "all-in-one" and args.arch != "flux":
        raise UserError(f"--layout {args.layout} is for --arch flux only.", fix="leave --layout out")
    missing = missing_trainer_packages()
    if missing:
        return _delegate(args, out, missing)
    from cloudlora_backend.trainer.tiny import make_tiny_checkpoint

    path = make_tiny_checkpoint(args.arch, out, seed=args.seed, layout=args.layout)
    _report({"path": str(path), "arch": args.arch, "seed": args.seed, "bytes": path.stat().st_size}, args.json)
    return 0


def _report(info: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(info, indent=2))
    else:
        print(f"wrote {info['path']} ({info['bytes'] / 1e6:.1f} MB, tiny {info['arch']}, seed {info['seed']})")


def _delegate(args, out: Path, missing: list[str]) -> int:
    how = ("Point the `trainer_python` setting or CLOUDLORA_TRAINER_PYTHON at the trainer environment's python "
           "(e.g. .venv/trainer/bin/python, built by `source tools/env.sh; env_trainer`), or install the trainer "
           "packages: pip install -e '.[trainer]'.")
    python, why_not = _trainer_python()
    if not python and why_not.startswith("no trainer Python is configured and the managed"):
        python = _setup_trainer_env(args, missing, why_not, how)
    if not python:
        raise UserError(f"make-tiny-model needs the trainer packages, and this Python ({sys.executable}) lacks: "
                        f"{', '.join(missing)}; {why_not}.", fix=how)
    if not Path(python).exists():
        raise UserError(f"the configured trainer Python {python} does not exist.", fix=how)
    # Straight to the trainer's module, through the bootstrap: the trainer environment needs no install of this
    # package (the managed venv has none).
    cmd = bootstrap.command(python, "-m", "cloudlora_backend.trainer.tiny", "--arch", args.arch, str(out.resolve()),
                            "--seed", str(args.seed), "--layout", args.layout)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                          env=processes.child_env(), **processes.popen_kwargs())
    if proc.returncode != 0:
        raise UserError(f"the trainer Python {python} failed to build the tiny model (exit {proc.returncode}).",
                        fix="run the command above with that Python to see the full error; " + how)
    _report(json.loads(proc.stdout.strip().splitlines()[-1]), args.json)
    return 0


def _setup_trainer_env(args, missing: list[str], why_not: str, how: str) -> str:
    """Creates the managed trainer venv when asked (--setup, or yes on a terminal); else says plainly what it needs."""
    from ..jobs.local_backend import trainer_env

    if not args.setup:
        asked = sys.stdin.isatty() and sys.stderr.isatty()
        if asked:
            print(f"make-tiny-model builds the model with torch and diffusers; {why_not}.", file=sys.stderr)
        if not asked or input("Set up the trainer environment now (torch and the trainer's packages, a few GB; "
                              "the first local job would do the same)? [y/N] ").strip().lower() not in ("y", "yes"):
            raise UserError(f"make-tiny-model needs the trainer packages, and this Python ({sys.executable}) lacks: "
                            f"{', '.join(missing)}; {why_not}.",
                            fix=f"run it again with --setup to create the trainer environment now (the same one the "
                                f"first local job creates: torch and the trainer's packages, a few GB, a few "
                                f"minutes), or: {how}")
    try:
        return trainer_env.ensure(log=lambda line: print(line, file=sys.stderr, flush=True))
    except trainer_env.SetupError as err:
        raise UserError(f"Setting up the trainer environment failed: {err.reason}",
                        fix=err.fix or "run `cloudlora doctor` to see what is missing") from None
