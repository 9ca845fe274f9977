"""Writes and checks the trainer's lock, `cloud_backend/requirements-lock.txt`, from the ranges in pyproject.toml.

    python tools/trainer_lock.py write    resolve the `trainer` extra's ranges at their newest versions that install on
                                          every supported Python, and write the lock
    python tools/trainer_lock.py check    the lock installs on every supported Python, with torch left as it is

One lock for every place the trainer runs (the container, the local backend's managed venv, tools/env.sh and CI):
the same exact versions, whichever Python the machine has. So the versions are resolved for the *oldest* supported
Python (3.10, A1111's), and each newer Python must accept the same pins (packages that only some Pythons need, such
as `tomli` below 3.11, get an environment marker). pip resolves for this machine's platform only, so what the pins
need on Windows or macOS alone (colorama, pyreadline3) is added with a `sys_platform` marker: pip -r installs the
lock with its dependencies, and a need missing from the lock would be installed there unpinned.

The packages that come with torch (its CUDA wheels, triton, sympy, ...) are not in the lock: an installed torch keeps
its own. Everything else the trainer imports, directly or not, is pinned. Stdlib + pip only; resolution is pip's own
(`pip install --dry-run --report`), so it needs the package index but installs nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "cloud_backend" / "requirements-lock.txt"
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]  # 3.10: A1111 1.10.1; 3.11: CI; 3.13: the AWS DLC
OTHER_PLATFORMS = {"win32": "Windows", "darwin": "Darwin"}  # besides this machine's Linux
TORCH = "torch==2.13.0"  # only a resolution anchor: torch itself is never in the lock

HEADER = """\
# The trainer's lock: every Python package the trainer needs, at exact versions, except torch and what torch brings
# (an installed torch keeps its own). Used by the container, the local backend's managed venv, tools/env.sh and CI.
# Written by `python tools/trainer_lock.py write` from the ranges of the `trainer` extra in pyproject.toml, resolved
# for Python 3.10 and checked on 3.10-3.13. To bump one package, edit its line and run `bash tools/test.sh`;
# `bash tools/check-upstream.sh` shows what the newest versions the ranges allow would break.
# torch: >=2.7.1,<=2.13.0 (the torch versions this lock is tested with: tests/host's managed venvs train on 2.7.1,
#   .venv/trainer on 2.13.0; a WebUI torch in this range is reused, any other gets its own; jobs/local_backend/torch_choice.py)
"""


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def trainer_ranges() -> list[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [r for r in data["project"]["optional-dependencies"]["trainer"] if not r.lower().startswith("torch")]


def _interpreter(version: str) -> str:
    """This machine's Python `version` (pyenv's or pythonX.Y on PATH), or "" when it has none."""
    import glob
    import shutil

    found = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python")))
    return found[-1] if found else (shutil.which(f"python{version}") or "")


def _resolve(python: str, requirements: list[str]) -> list[dict]:
    """pip's resolution of `requirements` (plus torch) for a Python version, as its report's install list."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        # The real interpreter where the machine has it: `--python-version` alone once let a pin that needs
        # Python 3.11 (Markdown 3.11) into a lock for 3.10.
        real = _interpreter(python)
        target = [] if real else ["--python-version", python]
        cmd = [real or sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--disable-pip-version-check", "--target", str(Path(tmp) / "t"), *target,
               "--only-binary=:all:", "--report", str(report), TORCH, *requirements]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            errors = [ln for ln in proc.stderr.splitlines() if "is ignored: it is neither" not in ln]
            raise SystemExit(f"pip cannot resolve for Python {python}:\n" + "\n".join(errors[-25:]))
        return json.loads(report.read_text(encoding="utf-8"))["install"]


def _requires(item: dict, python: str, platform: str = "") -> list[str]:
    """Names this distribution needs on `python` (markers evaluated, extras ignored), on `platform` if given."""
    from pip._vendor.packaging.requirements import Requirement

    env = {"python_version": python, "python_full_version": python + ".0", "extra": ""}
    if platform:
        env.update(sys_platform=platform, platform_system=OTHER_PLATFORMS[platform],
                   os_name="nt" if platform == "win32" else "posix")
    out = []
    for text in item["metadata"].get("requires_dist") or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(env):
            out.append(_canon(req.name))
    return out


def _closure_without_torch(items: list[dict], python: str) -> dict[str, str]:
    """{name: version} reachable from the requested packages without going through torch."""
    by_name = {_canon(i["metadata"]["name"]): i for i in items}
    todo = [n for n, i in by_name.items() if i.get("requested") and n != "torch"]
    seen: dict[str, str] = {}
    while todo:
        name = todo.pop()
        if name in seen or name == "torch" or name not in by_name:
            continue
        item = by_name[name]
        seen[name] = item["metadata"]["version"]
        todo += _requires(item, python)
    return {by_name[n]["metadata"]["name"]: v for n, v in seen.items()}


def _marker(pythons: list[str]) -> str:
    if pythons == PYTHONS:
        return ""
    if pythons == PYTHONS[: len(pythons)]:
        return f'; python_version < "{PYTHONS[len(pythons)]}"'
    if pythons == PYTHONS[-len(pythons):]:
        return f'; python_version >= "{pythons[0]}"'
    return "; " + " or ".join(f'python_version == "{p}"' for p in pythons)


def _platform_only(items: list[dict], python: str, platform: str) -> set[str]:
    """Names the resolved packages need on `platform` (not through torch) that this machine's resolution lacks."""
    have = {_canon(i["metadata"]["name"]) for i in items}
    return {n for i in items if _canon(i["metadata"]["name"]) != "torch"
            for n in _requires(i, python, platform) if n not in have and n != "torch"}


def _platform_pins(pins: list[str]) -> dict[str, tuple[str, set, set]]:
    """{name: (version, pythons, platforms)} for what the pins need only on another platform, resolved with the
    pins held (such packages are pure Python: a binary-only one fails here, and then needs that platform's pip)."""
    found: dict[str, tuple[str, set, set]] = {}
    for python in PYTHONS:
        items = _resolve(python, pins)
        for platform in OTHER_PLATFORMS:
            names = sorted(_platform_only(items, python, platform))
            if not names:
                continue
            for item in _resolve(python, pins + names):
                name = item["metadata"]["name"]
                if _canon(name) in names:
                    version, pythons, platforms = found.setdefault(name, (item["metadata"]["version"], set(), set()))
                    pythons.add(python)
                    platforms.add(platform)
    return found


def _platform_marker(pythons: set, platforms: set) -> str:
    where = " or ".join(f'sys_platform == "{p}"' for p in sorted(platforms))
    by_python = _marker(sorted(pythons, key=PYTHONS.index))[2:]
    if not by_python:
        return f"; {where}"
    return f"; ({where}) and ({by_python})" if len(platforms) > 1 or " or " in by_python else f"; {where} and {by_python}"


def read_lock(path: Path = LOCK) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]


def write() -> None:
    oldest = _closure_without_torch(_resolve(PYTHONS[0], trainer_ranges()), PYTHONS[0])
    pins = [f"{n}=={v}" for n, v in oldest.items()]
    where: dict[str, list[str]] = {n: [PYTHONS[0]] for n in oldest}
    for python in PYTHONS[1:]:
        found = _closure_without_torch(_resolve(python, pins), python)
        for name, version in found.items():
            if name in oldest and oldest[name] != version:
                raise SystemExit(f"Python {python} resolves {name}=={version}, not the lock's {oldest[name]}")
            if name not in oldest:
                oldest[name] = version
                where[name] = []
            where[name].append(python)
    markers = {n: _marker(where[n]) for n in oldest}
    for name, (version, pythons, platforms) in _platform_pins([f"{n}=={v}" for n, v in oldest.items()]).items():
        oldest[name] = version
        markers[name] = _platform_marker(pythons, platforms)
    lines = [f"{n}=={oldest[n]}{markers[n]}" for n in sorted(oldest, key=_canon)]
    LOCK.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {LOCK.relative_to(ROOT)}: {len(lines)} packages")


def check() -> int:
    pins = read_lock()
    bad = 0
    for python in PYTHONS:
        try:
            items = _resolve(python, pins)
        except SystemExit as err:
            print(f"Python {python}: FAILS\n{err}")
            bad += 1
            continue
        locked = {_canon(re.split(r"[=;<> ]", p)[0]) for p in pins}
        extra = {_canon(n) for n in _closure_without_torch(items, python)} - locked
        extra |= {f"{n} ({platform})" for platform in OTHER_PLATFORMS
                  for n in _platform_only(items, python, platform) - locked}
        print(f"Python {python}: ok" + (f" (not locked: {sorted(extra)})" if extra else ""))
        bad += bool(extra)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["write", "check"])
    args = ap.parse_args(argv)
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    if args.command == "write":
        write()
        return 0
    return check()


if __name__ == "__main__":
    sys.exit(main())
