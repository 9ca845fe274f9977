"""Stop on Windows: no SIGTERM reaches the trainer there, so it polls the stop file the local backend's Stop writes
(ROOT/runner/stop-requested), checkpoints and exits 143 like a SIGTERM stop. Under the local runner it also stops
when the runner is gone (macOS has no parent-death signal)."""
from __future__ import annotations

import os

from cloudlora_backend.trainer.__main__ import EXIT_STOPPED, StopWatch

from .train_helpers import SAMPLE_DATASET, SMALL, failure, make_job, run_entrypoint
from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test

TOML = SMALL + "network_dim = 4\nnetwork_alpha = 4\nmax_train_steps = 6\n"


def test_a_stop_file_checkpoints_and_exits_143_after_the_first_step(tmp_path, tiny_sd15_path):
    root = make_job(tmp_path / "j", tiny_sd15_path, SAMPLE_DATASET, TOML, output_name="s")
    (root / "runner").mkdir()
    (root / "runner" / "stop-requested").write_text("1", encoding="utf-8")
    assert run_entrypoint(root) == EXIT_STOPPED, failure(root)
    assert (root / "checkpoints" / "state.pt").is_file()
    assert "at step 1" in failure(root)
    assert not (root / "model" / "s.safetensors").exists()


def test_the_trainer_stops_when_its_runner_is_gone(tmp_path, monkeypatch):
    parent = {"pid": 4242}
    monkeypatch.setattr(os, "getppid", lambda: parent["pid"])
    watch = StopWatch(tmp_path / "no-stop-file", runner_pid="4242")
    assert not watch()
    parent["pid"] = 1  # reparented: the runner died
    assert watch()


def test_without_a_runner_the_parent_is_not_watched(tmp_path, monkeypatch):
    parent = {"pid": 4242}
    monkeypatch.setattr(os, "getppid", lambda: parent["pid"])
    watch = StopWatch(tmp_path / "no-stop-file", runner_pid="")  # SageMaker, or a run by hand
    parent["pid"] = 1
    assert not watch()
