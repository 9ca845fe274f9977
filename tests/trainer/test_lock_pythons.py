"""The trainer's lock installs on every Python a WebUI runs: 3.10 (A1111 1.10.1, Forge), 3.11, 3.12 and 3.13 (the
AWS DLC), each checked by the real interpreter's own pip (a `--python-version` resolution once let a Python 3.11-only
pin through, and every A1111 user's first local job failed on it)."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "cloud_backend" / "requirements-lock.txt"


def interpreter(version: str) -> str:
    """The machine's Python `version` (pyenv's, or pythonX.Y on PATH); the CI machine has all four."""
    found = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python")))
    exe = found[-1] if found else shutil.which(f"python{version}")
    assert exe, f"Python {version} is needed to check the lock on it (the CI machine has pyenv's)"
    return exe


@pytest.mark.parametrize("version", ["3.10", "3.11", "3.12", "3.13"])
def test_the_trainer_lock_installs_on_python(version, tmp_path):
    proc = subprocess.run([interpreter(version), "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
                           "--quiet", "--disable-pip-version-check", "--target", str(tmp_path / "t"), "-r", str(LOCK)],
                          capture_output=True, text=True, timeout=600)
    errors = [ln for ln in proc.stderr.splitlines() if "is ignored: it is neither" not in ln]
    assert proc.returncode == 0, f"the lock does not install on Python {version}:\n" + "\n".join(errors[-10:])


def test_the_lock_declares_the_torch_range_it_is_tested_with():
    import re

    m = re.search(r"^# torch: >=([\d.]+),<=([\d.]+)", LOCK.read_text(encoding="utf-8"), re.M)
    assert m, "the lock's '# torch: >=FLOOR,<=NEWEST' line"
    assert m.group(2) == "2.13.0", "the newest end is the torch .venv/trainer tests with (tools/env.sh)"
    assert "2.13.0" in (ROOT / "tools" / "env.sh").read_text(encoding="utf-8")


def _marker_env(python: str, platform: str) -> dict:
    system = {"linux": "Linux", "win32": "Windows", "darwin": "Darwin"}[platform]
    return {"python_version": python, "python_full_version": python + ".0", "sys_platform": platform,
            "platform_system": system, "os_name": "nt" if platform == "win32" else "posix",
            "platform_machine": {"linux": "x86_64", "win32": "AMD64", "darwin": "arm64"}[platform],
            "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def test_the_lock_pins_what_its_packages_need_on_every_python_and_platform():
    """The lock is installed with pip -r, dependencies included: a package that one of its pins needs on some
    Python or platform and that the lock lacks is installed there at whatever version is newest (on A1111's Python
    3.10 that was anyio's exceptiongroup and huggingface-hub's tomli; on Windows, colorama for tqdm, click and typer,
    and pyreadline3 for humanfriendly). Read from the metadata of the packages installed here from the lock; the
    few pins this venv (Linux, 3.11) does not install are leaves or have their needs pinned."""
    import importlib.metadata as metadata
    import re

    from packaging.requirements import Requirement

    def canon(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pins = [Requirement(ln.split("#")[0]) for ln in LOCK.read_text(encoding="utf-8").splitlines()
            if ln.split("#")[0].strip()]
    by_name = {canon(r.name): r for r in pins}
    missing: dict[str, set] = {}
    for python in ("3.10", "3.11", "3.12", "3.13"):
        for platform in ("linux", "win32", "darwin"):
            env = _marker_env(python, platform)
            for pin in pins:
                if pin.marker is not None and not pin.marker.evaluate(env):
                    continue
                try:
                    needs = metadata.requires(pin.name) or []
                except metadata.PackageNotFoundError:
                    continue  # a pin for another Python or platform: see the docstring
                for text in needs:
                    need = Requirement(text)
                    name = canon(need.name)
                    if name == "torch" or (need.marker is not None and not need.marker.evaluate(env)):
                        continue
                    held = by_name.get(name)
                    if held is None or (held.marker is not None and not held.marker.evaluate(env)):
                        missing.setdefault(f"{pin.name} needs {need}", set()).add(f"{platform} {python}")
    assert missing == {}, "\n".join(f"{k}: on {sorted(v)}" for k, v in sorted(missing.items()))
