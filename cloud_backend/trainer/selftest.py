"""Proves this environment can train: one real LoRA step, through the same entrypoint and contract as a job.

`python -m cloudlora_backend.trainer.selftest` builds the tiny SD 1.5 model (the real layer layout, tiny widths) and
two 64 px images in a temporary job folder, trains one step with the UNet and the text encoder (the SD 1.5 default,
and the path a transformers/peft mismatch breaks), checks the LoRA file, and prints one JSON line:
{"ok": true, "seconds": 4.1, "torch": "2.13.0", "device": "cpu"} or {"ok": false, "error": "<the error's last line>"}.
Importing torch and building the model take most of the few seconds. The doctor runs it and caches the answer per
environment (cloudlora.jobs.local_backend.trainer_proof).
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

HYPERPARAMETERS = {"output_name": "selftest", "family": "sd15", "max_train_steps": "1", "resolution": "64,64",
                   "min_bucket_reso": "64", "max_bucket_reso": "128", "train_batch_size": "1",
                   "network_train_unet_only": "false", "cache_latents": "false", "sample_every_n_steps": "0"}


def _last_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or line.startswith("error:")]
    return (errors or lines or ["no output"])[-1][:400]


def run() -> dict:
    t0 = time.monotonic()
    out = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="cloudlora-selftest-") as tmp:
        root = Path(tmp)
        (root / "input/config").mkdir(parents=True)
        (root / "input/config/hyperparameters.json").write_text(json.dumps(HYPERPARAMETERS), encoding="utf-8")
        subset = root / "input/data/dataset/1_selftest"
        subset.mkdir(parents=True)
        try:
            from PIL import Image

            from .tiny import make_tiny_checkpoint

            for i, colour in enumerate([(200, 40, 40), (40, 40, 200)]):
                Image.new("RGB", (64, 64), colour).save(subset / f"{i}.png")
                (subset / f"{i}.txt").write_text(f"selftest, a square {i}", encoding="utf-8")
            make_tiny_checkpoint("sd15", root / "input/data/model/tiny-sd15.safetensors")
            from .__main__ import main

            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                code = main(["--root", str(root)])
        except Exception as err:  # noqa: BLE001 - the answer is the error, in one line
            return {"ok": False, "error": f"{type(err).__name__}: {err}"[:400],
                    "seconds": round(time.monotonic() - t0, 1)}
        lora = root / "model" / "selftest.safetensors"
        if code != 0 or not lora.is_file():
            failure = root / "output" / "failure"
            reason = failure.read_text(encoding="utf-8") if failure.is_file() else out.getvalue()
            return {"ok": False, "error": _last_error(reason), "exit": code,
                    "seconds": round(time.monotonic() - t0, 1)}
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {"ok": True, "seconds": round(time.monotonic() - t0, 1), "torch": torch.__version__, "device": device}


if __name__ == "__main__":
    print(json.dumps(run()), flush=True)
    sys.exit(0)
