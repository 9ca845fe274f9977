"""`cloudlora make-tiny-model` in the trainer environment."""
from __future__ import annotations

import json
import subprocess
import sys

from cloudlora_backend.trainer.model.load import load_components


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "cloudlora", "make-tiny-model", *args],
                          capture_output=True, text=True, timeout=300)


def test_make_tiny_model_writes_a_checkpoint_that_the_trainer_loads(tmp_path):
    out = tmp_path / "models" / "tiny.safetensors"
    proc = _cli("--arch", "sd15", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["path"] == str(out) and info["arch"] == "sd15" and info["bytes"] == out.stat().st_size
    assert load_components(out).family == "sd15"


def test_make_tiny_model_refuses_a_name_that_is_not_safetensors(tmp_path):
    proc = _cli("--arch", "sdxl", str(tmp_path / "tiny.ckpt"))
    assert proc.returncode == 1
    assert "must end in .safetensors" in proc.stderr and "fix:" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_make_tiny_model_rejects_an_unknown_arch_as_a_usage_error(tmp_path):
    proc = _cli("--arch", "sd3", str(tmp_path / "x.safetensors"))
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
