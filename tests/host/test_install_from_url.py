"""Install from URL, then restart: A1111 runs install.py through launch.run_pip, which adds the extension's
dependencies and moves none of the WebUI's pins; the next start runs no pip; the tabs and every REST route are there."""
from __future__ import annotations

import subprocess
from pathlib import Path

from tests.host import a1111

ROOT = a1111.ROOT
EXTENSION_DEPENDENCIES = ["boto3", "botocore", "s3transfer", "jmespath", "tomlkit", "platformdirs"]


def _pinned() -> list[str]:
    names = [line.split("==")[0].strip().lower().replace("_", "-") for line in a1111.PINS.read_text().splitlines()
             if "==" in line and not line.lstrip().startswith("#")]
    return names + ["torch"]


def test_the_first_start_installs_the_dependencies_through_run_pip_and_moves_no_pin(webui):
    log = webui.host.log_text()
    # launch.run_pip prints "Installing <desc>"; install.py's own pip fallback would not.
    assert "Installing Cloud LoRA Trainer requirements" in log, log
    new = [name for name in EXTENSION_DEPENDENCIES if name not in webui.freeze_before]
    assert "boto3" in new, "the WebUI venv had boto3 before the extension came"
    for name in EXTENSION_DEPENDENCIES:  # (Forge's gradio 4.40 brings tomlkit itself: it stays as it was)
        assert name in webui.freeze_after, f"install.py did not install {name}:\n{log}"
        if name not in new:
            assert webui.freeze_after[name] == webui.freeze_before[name], f"{name} moved"
    for name in _pinned():
        assert webui.freeze_after[name] == webui.freeze_before[name], f"{name} moved"
    check = subprocess.run([webui.host.python, "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert not any(name in webui.freeze_after for name in ("cloud-lora-trainer", "sagemaker")), \
        "the extension itself is never pip-installed into the WebUI venv"


def test_the_next_start_runs_no_pip(webui):
    """What every later start does: the WebUI's installer step runs install.py again, which finds nothing missing."""
    host = webui.host
    code = "import launch; launch.prepare_environment()"
    run = subprocess.run([host.python, "-c", code, *host.args], cwd=host.webui, env=host.env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Installing" not in run.stdout + run.stderr
    assert a1111.freeze(host.python) == webui.freeze_after


def test_both_tabs_and_every_rest_route_are_there(webui):
    host = webui.host
    paths = host.get("/openapi.json")["paths"]
    ours = sorted(p for p in paths if p.startswith("/cloudlora/v1/"))
    assert len(ours) >= 24, ours
    for path in ("/cloudlora/v1/jobs", "/cloudlora/v1/jobs/{job_id}", "/cloudlora/v1/jobs/{job_id}/pull",
                 "/cloudlora/v1/models/upload", "/cloudlora/v1/datasets/upload", "/cloudlora/v1/version"):
        assert path in paths
    assert host.get("/cloudlora/v1/version")["host"] == a1111.STACK
    code, _ = host.request("GET", "/cloudlora/v1/jobs", auth=False)
    assert code == 401, "the extension's routes are behind --api-auth like A1111's own"
    config = host.get("/config")
    titles = {c.get("props", {}).get("label") for c in config["components"] if c.get("type") == "tabitem"}
    assert {"txt2img", "img2img", "Cloud Asset Management", "Train Management", "Settings"} <= titles, titles
    assert "cloudlora_backend" in host.get("/sdapi/v1/options")


def test_the_extension_is_not_importable_outside_the_webui_process(webui):
    """The point of the bare clone: only the entry script (and the processes it starts) map the import names."""
    host = webui.host
    run = subprocess.run([host.python, "-c", "import cloudlora"], cwd=Path("/"), env=host.env, capture_output=True,
                         text=True)
    assert "No module named 'cloudlora'" in run.stderr
