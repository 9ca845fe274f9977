"""A local training job in the WebUI as Install from URL leaves it (a bare git clone, no pip install of the extension,
no CLOUDLORA_TRAINER_PYTHON): the runner starts, creates the managed trainer venv from the clone, trains, and the
LoRA lands in the WebUI's models/Lora. A runner that dies at start-up says why in the job's explanation."""
from __future__ import annotations

import json

from tests.host import a1111

# A few steps at 128 px on the tiny model (as tools/demo.sh): the whole path in well under a minute of training.
FAST = {"max_train_steps": "4", "resolution": "128,128", "min_bucket_reso": "64", "max_bucket_reso": "256",
        "sample_prompts": "cldemo, a photo"}


def test_post_jobs_trains_in_the_managed_venv_and_the_lora_lands_in_models_lora(webui, assets):
    host = webui.host
    job = host.post("/cloudlora/v1/jobs", {"model": assets.model, "dataset": assets.dataset, "lora_name": "rest_lora",
                                           "backend": "local", "set": FAST})
    job = host.wait_job(job["id"])
    log = "\n".join(job["log_tail"])
    assert job["status"] == "Completed", f"{job.get('explanation')}\n{log}"
    assert job["step"] == job["total_steps"] == 4
    # The trainer ran in the venv the runner created under the extension's data folder, started through the
    # bootstrap of the clone in extensions/ (nothing is pip-installed anywhere).
    venv = webui.home / "data" / "trainer-venv"
    assert f"$ {venv}/bin/python {host.extension}/extension/bootstrap.py -m cloudlora_backend.trainer" in \
        "\n".join(host.get(f"/cloudlora/v1/jobs/{job['id']}/logs")["lines"])
    # Set up as a user's would be: the WebUI's own torch (2.1.2 on A1111, 2.3.1 on Forge) is below the trainer's floor,
    # so the venv got the floor torch for this machine (no NVIDIA GPU: the PyTorch index's build, here its stand-in
    # folder), said so, and the setup is the first row of where the time went.
    lines = "\n".join(host.get(f"/cloudlora/v1/jobs/{job['id']}/logs")["lines"])
    host_torch = webui.freeze_before["torch"]
    assert host_torch.startswith("2.1.2" if a1111.STACK == "a1111" else "2.3.1")
    assert f"torch: the WebUI's torch {host_torch} is older than the trainer's floor 2.7.1" in lines, lines[:3000]
    assert "Trainer environment ready (torch 2.7.1, cpu)" in lines
    assert next(iter(job["phases"]["seconds"])) == "setup (trainer environment)", job["phases"]
    lora = host.lora_dir / "rest_lora.safetensors"
    assert job["pulled"] == [str(lora)], "auto-pulled into the WebUI's models/Lora"
    sidecar = json.loads((host.lora_dir / "rest_lora.json").read_text())
    assert sidecar["activation text"] == assets.trigger and sidecar["sd version"] == "SD1"
    assert (host.lora_dir / "rest_lora.preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _break_runner(host) -> tuple:
    """A broken install: the runner module of the clone fails to import (as the runner did before the bootstrap)."""
    runner = host.extension / "extension" / "jobs" / "local_backend" / "runner.py"
    original = runner.read_text()
    future = "from __future__ import annotations\n"
    runner.write_text(original.replace(future, future + "import cloudlora_missing_module  # a broken install\n", 1))
    return runner, original


def test_a_runner_that_dies_at_start_shows_its_own_error_not_orphaned(webui, assets):
    host = webui.host
    runner, original = _break_runner(host)
    try:
        job = host.post("/cloudlora/v1/jobs", {"model": assets.model, "dataset": assets.dataset,
                                               "lora_name": "never", "backend": "local", "set": FAST})
        job = host.wait_job(job["id"], timeout=120)
    finally:
        runner.write_text(original)
    assert job["status"] == "Failed"
    assert job["secondary_status"] != "Orphaned"
    explanation = json.dumps(job["explanation"])
    assert "No module named 'cloudlora_missing_module'" in explanation, explanation
    assert "restarted or the process was killed" not in explanation
