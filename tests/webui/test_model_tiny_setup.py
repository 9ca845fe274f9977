"""`make-tiny-model` before any job: with --setup it creates the trainer environment (the one the first local job
would create) and builds the model; without it, it says plainly what it needs and how to get it."""
from __future__ import annotations

import subprocess
import sys

from cloudlora.cli import main as cli
from cloudlora.jobs.local_backend import trainer_env


def test_with_setup_it_creates_the_trainer_environment_then_builds(tmp_path, trainer_python, monkeypatch, capsys):
    calls = []

    def ensure(log=print, **kwargs):  # stands in for the venv's creation (pip downloads gigabytes)
        calls.append(kwargs)
        log("Setting up the trainer environment (first use).")
        return trainer_python

    monkeypatch.setattr(trainer_env, "ensure", ensure)
    out = tmp_path / "tiny.safetensors"
    assert not trainer_env.is_ready()  # a fresh machine: no job has run
    assert cli(["make-tiny-model", "--arch", "sd15", str(out), "--setup"]) == 0
    assert calls and out.stat().st_size > 5_000_000
    captured = capsys.readouterr()
    assert "Setting up the trainer environment" in captured.err and "wrote" in captured.out


def test_without_setup_it_says_what_it_needs_and_how(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cloudlora", "make-tiny-model", "--arch", "sd15",
                           str(tmp_path / "t.safetensors")], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert "not set up yet" in proc.stderr and "--setup" in proc.stderr and "torch" in proc.stderr
    assert not (tmp_path / "t.safetensors").exists()
