"""A finished job says where its time and memory went: the trainer's closing per-phase summary, read from the job's
log, shown in the Train tab's job view, `cloudlora job show` and the REST job record."""
from __future__ import annotations

import json

from cloudlora.jobs import service
from cloudlora.ui import train_jobs

from .test_jobs_local_machinery import _cli, _spec, _wait_for

# The trainer's closing lines (cloud_backend/trainer/loop/phases.py) on a GPU: tests/trainer/test_train_phases.py checks
# that the real trainer writes this format and that cloudlora.jobs.results.phases reads it.
RECORD = {"seconds": {"load": 6.2, "cache": 3.1, "setup": 1.4, "steps": 36.5, "samples": 4.0, "save": 0.6},
          "count": {"load": 1, "cache": 1, "setup": 1, "steps": 30, "samples": 1, "save": 2}, "total_s": 52.9,
          "first_step_s": 12.4, "steps": 30,
          "peak_rss_gib": {"load": 2.1, "cache": 2.3, "setup": 2.3, "steps": 2.4, "samples": 2.4, "save": 2.4},
          "rss_per_phase": True,
          "peak_gpu_gib": {"load": 6.9, "cache": 9.8, "setup": 5.9, "steps": 11.7, "samples": 8.2, "save": 5.9},
          "gpu": "NVIDIA H200"}
TAIL = "time: load 6.2 s, ... (the line for people)\nphases=" + json.dumps(RECORD, separators=(",", ":"))


def test_a_finished_job_shows_the_time_and_peak_memory_of_each_phase(job_env, fake_trainer, monkeypatch):
    fake_trainer(steps=2, delay=0.05)
    monkeypatch.setenv("FAKE_TAIL", TAIL)
    job = service.create_job(_spec(job_env))
    done = _wait_for(job["id"], ("Completed",))
    assert done["phases"] == RECORD

    status = train_jobs.job_details(job["id"])[4]  # the Markdown box under the job (a failure's reason goes there)
    assert "**Where the time went**" in status
    assert "| steps (30, 0.82 it/s) | 36.5 s | 69 % | 11.70 GiB | 2.40 GiB |" in status
    assert "| total | 52.9 s |  | 11.70 GiB | 2.40 GiB |" in status
    assert "first step after 12.4 s, on NVIDIA H200." in status

    shown = _cli("job", "show", job["id"])
    assert shown.returncode == 0, shown.stderr
    assert "where the time went" in shown.stdout and "steps (30, 0.82 it/s)  36.5 s  69 %" in shown.stdout


def test_a_job_without_a_summary_shows_no_empty_section(job_env, fake_trainer):
    fake_trainer(steps=2, delay=0.05)
    job = service.create_job(_spec(job_env))
    assert _wait_for(job["id"], ("Completed",))["phases"] is None
    assert "Where the time went" not in train_jobs.job_details(job["id"])[4]
