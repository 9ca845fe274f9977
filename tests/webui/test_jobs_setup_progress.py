"""Setup says what it is doing: pip's output becomes the package, its size, the bytes so far and the time left; a
failed install is explained in words with the fix (the bare pip command line told an A1111 user nothing)."""
from __future__ import annotations

from cloudlora.jobs.local_backend import pip_progress


def test_the_download_is_followed_by_package_size_and_progress():
    state = pip_progress.SetupProgress(step="Installing torch 2.7.1")
    assert not state.update("Collecting torch<=2.13.0,>=2.7.1")
    assert not state.update("  Downloading torch-2.7.1-cp310-cp310-manylinux_2_28_x86_64.whl (821.0 MB)")
    assert state.update("Progress 0 of 821034567")
    assert state.update("Progress 410517283 of 821034567")
    text = pip_progress.describe(state.as_dict())
    assert text.startswith("Installing torch 2.7.1: downloading torch 2.7.1: 411 of 821 MB"), text
    state.update("Progress 821034567 of 821034567")
    assert state.downloaded == 821034567 and "of" not in pip_progress.describe(state.as_dict())


def test_time_left_comes_from_the_measured_rate():
    text = pip_progress.describe({"step": "Installing torch", "package": "torch 2.7.1", "done": 100e6,
                                  "total": 800e6, "rate": 5e6, "seconds_left": 140})
    assert "5.0 MB/s" in text and "about 2 min left" in text


def test_a_pin_that_needs_a_newer_python_is_explained_with_the_fix():
    reason, fix = pip_progress.explain("ERROR: Package 'markdown' requires a different Python: 3.10.13 not in '>=3.11'")
    assert reason == ("markdown needs Python >=3.11; this interpreter is Python 3.10.13, so the trainer's packages "
                      "cannot install on it.")
    assert "CLOUDLORA_TRAINER_PYTHON" in fix


def test_other_failures_keep_pips_own_error_line():
    reason, _ = pip_progress.explain("blah\nERROR: Could not build wheels for x\n  more")
    assert "ERROR: Could not build wheels for x" in reason
    reason, fix = pip_progress.explain("OSError: [Errno 28] No space left on device")
    assert "ran out of space" in reason and "Free some space" in fix


def test_the_job_panel_shows_the_setup_download_while_it_runs(tmp_path):
    import json
    import os

    from cloudlora.jobs.local_backend import local_status

    run = tmp_path / "runner"
    run.mkdir()
    (run / "runner.pid").write_text(str(os.getpid()))  # a live runner
    (run / "preparing").write_text(json.dumps({"step": "Installing torch 2.7.1", "package": "torch 2.7.1",
                                               "done": 410_000_000, "total": 821_000_000, "rate": 4e6,
                                               "seconds_left": 103}))
    st = local_status.status(tmp_path)
    assert st["status"] == "Starting"
    assert st["secondary_status"] == ("Installing torch 2.7.1: downloading torch 2.7.1: 410 of 821 MB, 4.0 MB/s, "
                                      "about 2 min left")


def test_setup_is_the_first_row_of_where_the_time_went():
    from cloudlora.jobs.results import phases

    rec = {"seconds": {"load": 2.0, "steps": 10.0}, "total_s": 12.0, "steps": 20}
    out = phases.with_setup(rec, 300.0)
    assert list(out["seconds"]) == ["setup (trainer environment)", "load", "steps"] and out["total_s"] == 312.0
    assert phases.table(out)[0][:3] == ["setup (trainer environment)", "300.0 s", "96 %"]
    assert phases.with_setup(rec, None) is rec
