"""The embedded default end to end: `cloudlora train --backend local --wait` with the real trainer on the tiny model
and the sample dataset; the LoRA, its sidecar and preview land in the Lora folder, and A1111 can load the LoRA."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict

from cloudlora_backend.trainer.model.family import read_safetensors_header
from tests.trainer.kohya_check import a1111_sd_version, check_kohya_tensors, forge_sd_version

FAST = ["--set", "max_train_steps=2", "--set", "resolution=64", "--set", "min_bucket_reso=64",
        "--set", "max_bucket_reso=128", "--set", "sample_prompts=cldemo, a photo"]


def test_cloudlora_train_wait_puts_a_loadable_lora_with_sidecar_and_preview_in_the_lora_folder(
        tmp_path, monkeypatch, tiny_sd15, sample_dataset, trainer_python):
    lora_dir = tmp_path / "Lora"
    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("CLOUDLORA_LORA_DIR", str(lora_dir))
    monkeypatch.setenv("CLOUDLORA_TRAINER_PYTHON", trainer_python)
    # Local paths: the CLI uploads them to the store first.
    cmd = [sys.executable, "-m", "cloudlora", "train", "--model", str(tiny_sd15), "--dataset", str(sample_dataset),
           "--backend", "local", "--name", "demo_e2e", "--wait", "--json", *FAST]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert run.returncode == 0, run.stdout + run.stderr
    job = json.loads(run.stdout)
    assert job["status"] == "Completed" and job["step"] == job["total_steps"] == 2
    assert job["loss_points"], "the loss curve comes from the job's TensorBoard events"
    assert job["samples"], "the trainer's sample images are listed"

    lora = lora_dir / "demo_e2e.safetensors"
    assert job["pulled"] == [str(lora)]
    sidecar = json.loads((lora_dir / "demo_e2e.json").read_text())
    assert sidecar["activation text"] == "cldemo"
    assert sidecar["sd version"] == "SD1"
    assert f"Job: {job['id']}" in sidecar["notes"] and "Dataset: dataset" in sidecar["notes"]
    assert (lora_dir / "demo_e2e.preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    header = read_safetensors_header(lora)
    meta = header.pop("__metadata__")
    assert meta["ss_output_name"] == "demo_e2e"  # A1111 shows it as the alias: equal to the file stem
    assert meta["ss_base_model_version"].startswith("sd_v1")
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
    modules = defaultdict(set)
    for key in header:
        module, _, suffix = key.partition(".")
        modules[module].add(suffix)
    assert all(s == {"lora_down.weight", "lora_up.weight", "alpha"} for s in modules.values())
    unet = [m for m in modules if m.startswith("lora_unet_")]
    te = [m for m in modules if m.startswith("lora_te_")]
    assert len(unet) == 192, "Kohya's UNet module set of SD1.5"
    assert len(te) in (0, 72) and all(m.startswith("lora_te_text_model_encoder_layers_") for m in te)
    assert len(unet) + len(te) == len(modules)
    # The training engine's own check: every module resolves in A1111 against the base model, with fitting shapes.
    base = {k: tuple(v["shape"]) for k, v in read_safetensors_header(tiny_sd15).items() if k != "__metadata__"}
    counts = check_kohya_tensors({k: tuple(v["shape"]) for k, v in header.items()}, base)
    assert counts["unet"] == 192
    assert a1111_sd_version(meta) == forge_sd_version(meta) == "SD1"
