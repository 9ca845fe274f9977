"""`cloudlora make-tiny-model` from the WebUI's environment (no torch): it hands over to the trainer's Python."""
from __future__ import annotations

import os
import subprocess
import sys


def _cli(args, **env):
    return subprocess.run([sys.executable, "-m", "cloudlora", "make-tiny-model", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})


def test_without_torch_here_it_runs_in_the_configured_trainer_python(tmp_path, trainer_python):
    out = tmp_path / "tiny.safetensors"
    proc = _cli(["--arch", "sd15", str(out)], CLOUDLORA_TRAINER_PYTHON=trainer_python)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and out.stat().st_size > 5_000_000
    with open(out, "rb") as f:  # a safetensors file: 8-byte header length, then a JSON header
        header_len = int.from_bytes(f.read(8), "little")
        assert f.read(1) == b"{" and header_len < out.stat().st_size
    assert "torch" not in sys.modules  # the WebUI side never imports torch


def test_without_a_trainer_python_it_says_how_to_get_one(tmp_path):
    proc = _cli(["--arch", "sdxl", str(tmp_path / "tiny.safetensors")])
    assert proc.returncode == 1
    assert "needs the trainer packages" in proc.stderr and "torch" in proc.stderr
    assert "CLOUDLORA_TRAINER_PYTHON" in proc.stderr
    assert not (tmp_path / "tiny.safetensors").exists()


def test_a_trainer_python_that_does_not_exist_is_named(tmp_path):
    proc = _cli(["--arch", "sd15", str(tmp_path / "t.safetensors")], CLOUDLORA_TRAINER_PYTHON=str(tmp_path / "nope"))
    assert proc.returncode == 1 and "nope does not exist" in proc.stderr


def test_with_nothing_configured_it_uses_the_local_backends_managed_trainer_venv(tmp_path, trainer_python):
    from cloudlora.jobs.local_backend import trainer_env

    venv = trainer_env.venv_dir()  # under the test's own data dir (isolated_settings)
    python = trainer_env.venv_python(venv)
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec "{trainer_python}" "$@"\n')  # stands in for the venv's interpreter
    python.chmod(0o755)
    (venv / trainer_env.STAMP).write_text(trainer_env._wanted_stamp(trainer_env.host_torch()), encoding="utf-8")
    out = tmp_path / "tiny.safetensors"
    proc = _cli(["--arch", "sd15", str(out), "--json"])
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 5_000_000
