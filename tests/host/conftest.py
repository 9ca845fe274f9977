"""Fixtures for tests/host: one fake A1111 1.10.1 per session with this extension installed from a git clone.

Runs under .venv/host (A1111's pins + torch, no Cloud LoRA Trainer), so nothing here imports `cloudlora`: the tests
talk to the WebUI the way a user does, through the page (Playwright) and the REST routes.

- `webui` (session): the WebUI started once as after Install from URL + restart: its venv put back to before the
  extension (a1111.reset_venv), the first start runs install.py through launch.run_pip, and the extension's data
  folder (with the managed trainer venv, created by the first local job's runner) lives for the session.
- `assets` (session): the tiny SD 1.5 checkpoint (in models/Stable-diffusion) and the sample dataset, uploaded to
  the extension's store through its REST routes.
- `browser_page`, `screenshot`: headless Debian Chromium, loopback only (tests/webui/fixtures/browser.py).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.host import a1111
from tests.webui.fixtures.browser import browser_page, take_screenshot  # noqa: F401  (fixtures)

ROOT = a1111.ROOT
TINY_CACHE = ROOT / ".cache" / "tiny"


@dataclass
class Started:
    host: a1111.Host
    home: Path
    freeze_before: dict
    freeze_after: dict


@pytest.fixture(scope="session")
def webui(tmp_path_factory):
    python = sys.executable  # .venv/host's: the WebUI runs in the venv these tests run in
    a1111.reset_venv(python)
    base = tmp_path_factory.mktemp("a1111")
    webui_dir = a1111.new_webui(base)
    a1111.install_extension(webui_dir)
    home = base / "home"
    before = a1111.freeze(python)
    host = a1111.Host(webui_dir, python, a1111.host_env(home))
    host.start(timeout=600)  # the first start runs install.py (pip) before the UI comes up
    started = Started(host, home, before, a1111.freeze(python))
    try:
        yield started
    finally:
        host.stop()
        a1111.kill_runners(home / "data", [home / "data" / "store"])
        (ROOT / "artifacts").mkdir(exist_ok=True)
        shutil.copy(host.log, ROOT / "artifacts" / "host-webui.log")  # the WebUI's own output, for a failed run


@pytest.fixture(scope="session")
def tiny_sd15() -> Path:
    """A random-weight A1111-layout SD 1.5 checkpoint, built once per checkout by the trainer environment."""
    out = TINY_CACHE / "tiny-sd15.safetensors"
    if not out.exists():
        py = os.environ.get("CLOUDLORA_TEST_TRAINER_PYTHON")
        assert py and Path(py).exists(), "set CLOUDLORA_TEST_TRAINER_PYTHON (tools/test.sh does) to .venv/trainer/bin/python"
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([py, "-m", "cloudlora", "make-tiny-model", "--arch", "sd15", str(out)], check=True)
    return out


@dataclass
class Assets:
    model: str
    dataset: str
    trigger: str


@pytest.fixture(scope="session")
def assets(webui, tiny_sd15) -> Assets:
    host = webui.host
    checkpoint = host.webui / "models" / "Stable-diffusion" / "tiny-sd15.safetensors"
    shutil.copy(tiny_sd15, checkpoint)
    task = host.post("/cloudlora/v1/models/upload", {"path": str(checkpoint), "name": "tiny-sd15"})
    model = host.wait_task("models", task["task_id"])
    task = host.post("/cloudlora/v1/datasets/upload", {"path": str(ROOT / "samples" / "dataset"), "name": "demo"})
    dataset = host.wait_task("datasets", task["task_id"])
    return Assets(model["name"], dataset["name"], (dataset.get("triggers") or [""])[0])


@pytest.fixture
def screenshot():
    return take_screenshot
