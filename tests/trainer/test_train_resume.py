"""SIGTERM (SageMaker stop, spot interruption): checkpoint, exit 143; the next run continues at the same step and
ends with the same LoRA as a run that was never interrupted."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

from safetensors.torch import load_file

from .train_helpers import SAMPLE_DATASET, SMALL, failure, make_job, run_entrypoint
from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test

STEPS = 12
TOML = SMALL + ('network_dim = 4\nnetwork_alpha = 4\nlearning_rate = 1e-3\nunet_lr = 1e-3\ntext_encoder_lr = 5e-4\n'
                'save_precision = "float"\nlr_warmup_steps = 3\nflip_aug = true\nshuffle_caption = true\n'
                'gradient_accumulation_steps = 2\n'
                f'max_train_steps = {STEPS}\n')


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    return env


def _run_until_sigterm(root, after_step: int) -> tuple[int, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "cloudlora_backend.trainer", "--root", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env())
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        if line.startswith(f"step={after_step}/"):
            proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=300), lines


def test_a_sigtermed_run_checkpoints_and_the_next_run_continues_at_the_same_step(tmp_path, tiny_sd15_path):
    straight = make_job(tmp_path / "straight", tiny_sd15_path, SAMPLE_DATASET, TOML, output_name="r")
    assert run_entrypoint(straight) == 0, failure(straight)

    job = make_job(tmp_path / "job", tiny_sd15_path, SAMPLE_DATASET, TOML, output_name="r")
    code, lines = _run_until_sigterm(job, after_step=2)
    assert code == 143, "\n".join(lines[-20:])
    steps = [int(m.group(1)) for m in (re.match(r"step=(\d+)/", ln) for ln in lines) if m]
    stopped_at = steps[-1]
    assert 2 <= stopped_at < STEPS
    assert (job / "checkpoints" / "state.pt").is_file()
    assert f"at step {stopped_at}" in failure(job)
    assert not (job / "model" / "r.safetensors").exists()

    proc = subprocess.run([sys.executable, "-m", "cloudlora_backend.trainer", "--root", str(job)],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resumed from checkpoint at step {stopped_at}" in proc.stdout
    resumed_steps = re.findall(r"^step=(\d+)/", proc.stdout, re.M)
    assert int(resumed_steps[0]) == stopped_at + 1 and int(resumed_steps[-1]) == STEPS

    a = load_file(str(straight / "model" / "r.safetensors"))
    b = load_file(str(job / "model" / "r.safetensors"))
    assert a.keys() == b.keys()
    moved = max(float(t.abs().max()) for k, t in a.items() if "lora_up" in k)
    assert moved > 0, "nothing trained"
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5 * max(1.0, moved), f"the resumed LoRA differs from the uninterrupted one by {worst}"
