"""Installing the trainer never moves the torch a user already has, and its packages are exactly the lock."""
from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "cloud_backend" / "requirements-lock.txt"


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_pip_install_of_the_trainer_extra_over_an_installed_torch_leaves_that_torch(tmp_path):
    # A venv that has exactly the torch of this environment (the user's, say), then what `pip install -e ".[trainer]"`
    # would do to it, asked of pip itself.
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    py = str(env / "bin" / "python")
    torch_version = importlib.metadata.version("torch")
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", f"torch=={torch_version}"], check=True,
                   capture_output=True)
    report = tmp_path / "report.json"
    proc = subprocess.run([py, "-m", "pip", "install", "--dry-run", "-q", "--report", str(report),
                           "-e", f"{ROOT}[trainer]"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    installs = {_canon(i["metadata"]["name"]): i["metadata"]["version"]
                for i in json.loads(report.read_text())["install"]}
    assert "torch" not in installs, f"the trainer extra would move torch {torch_version} to {installs.get('torch')}"
    assert "torchvision" not in installs and "open-clip-torch" not in installs


def test_this_environment_holds_exactly_the_locked_versions():
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        requirement, _, marker = line.partition(";")
        if marker.strip() and not eval_marker(marker):
            continue
        name, _, version = requirement.strip().partition("==")
        pins[_canon(name)] = version
    installed = {_canon(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    wrong = {n: (v, installed.get(n)) for n, v in pins.items() if installed.get(n) != v}
    assert not wrong, f"lock version vs installed: {wrong}"


def eval_marker(marker: str) -> bool:
    from packaging.markers import Marker

    return Marker(marker.strip()).evaluate({"python_version": f"{sys.version_info.major}.{sys.version_info.minor}"})
