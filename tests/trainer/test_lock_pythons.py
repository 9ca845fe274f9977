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
