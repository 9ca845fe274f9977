"""A CPU-only machine with the standalone install (Python 3.11, no torch): the first local job's trainer venv gets the
CPU build of torch, never GBs of CUDA wheels, says where it came from and what it downloads, and trains.

The PyTorch index is unreachable here (as from CI): the setup says so and falls back to pip's own sources, which on
this machine hold the CPU wheel of torch 2.13.0 for Python 3.11 (pip's find-links) beside PyPI's CUDA builds; the
dry run before the install decides, and a resolution with CUDA packages would be refused
(test_jobs_trainer_env.py shows that refusal on Python 3.10, where pip's sources have only CUDA builds).
"""
from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _python311() -> str:
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.11.*/bin/python")))
    assert found, "Python 3.11 (pyenv's, as on the CI machine)"
    return found[-1]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_cpu_only_machine_gets_the_cpu_torch_and_trains(tmp_path):
    app = tmp_path / "app"  # the standalone install: `pip install -e .` into a fresh venv (no torch)
    subprocess.run([_python311(), "-m", "venv", str(app)], check=True)
    subprocess.run([str(app / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-e", str(ROOT)], check=True, timeout=900)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDLORA_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(CLOUDLORA_DATA_DIR=str(tmp_path / "data"), CLOUDLORA_CONFIG_DIR=str(tmp_path / "config"),
               CLOUDLORA_TORCH_INDEX=f"http://127.0.0.1:{_closed_port()}/whl", HF_HUB_OFFLINE="1")
    setup = subprocess.run([str(app / "bin" / "python"), "-m", "cloudlora.jobs.local_backend.trainer_env"], env=env,
                           capture_output=True, text=True, timeout=1800)
    out = setup.stdout + setup.stderr
    assert setup.returncode == 0, out[-4000:]
    assert "the WebUI has no torch: no NVIDIA GPU, so the CPU build" in out
    assert "cannot be reached, so pip's own sources" in out
    assert "torch step: torch 2.13.0+cpu" in out and "to download at most" in out
    venv = tmp_path / "data" / "trainer-venv"
    py = str(venv / "bin" / "python")
    listed = subprocess.run([py, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True)
    names = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}
    assert names["torch"] == "2.13.0+cpu"
    assert not [n for n in names if n.startswith("nvidia-") or n == "triton"], "CUDA packages on a machine without a GPU"
    # ... and it trains: one real LoRA step (the doctor's proof) in the venv the setup made.
    step = subprocess.run([py, str(ROOT / "extension" / "bootstrap.py"), "-m", "cloudlora_backend.trainer.selftest"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert step.returncode == 0, step.stdout[-2000:] + step.stderr[-2000:]
    assert json.loads(step.stdout.strip().splitlines()[-1])["ok"] is True
