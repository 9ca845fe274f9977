"""A local job's status tells the truth when processes are killed, stopped or crash, and a client token names one
request. These run tests/webui/jobs_support/fake_trainer.py in place of the trainer (same container contract)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloudlora.errors import UserError
from cloudlora.jobs import records, service
from cloudlora.jobs.local_backend.local_status import alive
from tests.webui.test_jobs_local_machinery import _spec, _wait_for


def _pid(env, job_id: str, name: str) -> int:
    return int((env.store_dir / "jobs" / job_id / "runner" / name).read_text())


def _gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "cloudlora", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def test_a_new_job_is_never_queued_behind_nothing_and_a_queued_one_names_the_job_ahead(job_env, fake_trainer):
    fake_trainer(steps=150, delay=0.1)
    first = service.create_job(_spec(job_env, name="first"))
    seen = [first["status"]]
    deadline = time.monotonic() + 60
    while seen[-1] != "Training" and time.monotonic() < deadline:
        seen.append(service.get_job(first["id"], auto_pull=False)["status"])
        time.sleep(0.05)
    assert "Queued" not in seen, seen  # nothing else runs: it is starting, never queued
    second = service.create_job(_spec(job_env, name="second"))
    queued = _wait_for(second["id"], ("Queued",), timeout=30)
    assert queued["secondary_status"] == f"Waiting for the GPU: job {first['id']} is using it"
    service.stop_job(first["id"])
    _wait_for(second["id"], ("Training",))
    service.stop_job(second["id"])
    _wait_for(second["id"], ("Stopped",))


def test_a_stop_followed_by_a_crash_shows_the_crash_not_a_clean_stop(job_env, fake_trainer):
    fake_trainer(steps=150, delay=0.1, crash_on_stop="RuntimeError: disk full while writing the checkpoint")
    job = service.create_job(_spec(job_env))
    _wait_for(job["id"], ("Training",))
    service.stop_job(job["id"])
    ended = _wait_for(job["id"], ("Stopped", "Failed"))
    assert (ended["status"], ended["secondary_status"]) == ("Failed", "Crashed while stopping")
    assert "disk full while writing the checkpoint" in ended["failure"]


def test_a_sigterm_that_was_not_a_stop_says_how_to_resume_and_resume_continues_from_the_checkpoint(
        job_env, fake_trainer):
    fake_trainer(steps=40, delay=0.1)
    job = service.create_job(_spec(job_env))
    _wait_for(job["id"], ("Training",))
    time.sleep(0.5)
    os.kill(_pid(job_env, job["id"], "trainer.pid"), signal.SIGTERM)  # e.g. a shutdown, not the Stop button
    ended = _wait_for(job["id"], ("Stopped", "Failed"))
    assert (ended["status"], ended["secondary_status"]) == ("Failed", "Interrupted (SIGTERM)")
    assert f"`cloudlora resume {job['id']}`" in ended["failure"]
    assert ended["explanation"]["cause"] == "interrupted" and "Resume" in ended["explanation"]["fix"]
    assert ended["resumable"] is True
    checkpoint_step = int((job_env.store_dir / "jobs" / job["id"] / "checkpoints" / "state.txt").read_text())

    resumed = _cli("resume", job["id"])
    assert resumed.returncode == 0, resumed.stderr
    assert "continues from its last checkpoint" in resumed.stdout
    done = _wait_for(job["id"], ("Completed",))
    log = "\n".join(service.follow_logs(job["id"], follow=False))
    assert f"resumed from checkpoint at step {checkpoint_step}" in log
    after = log.split(f"resumed from checkpoint at step {checkpoint_step}", 1)[1]
    assert after.lstrip().startswith(f"step={checkpoint_step + 1}/40"), after[:200]
    assert done["step"] == 40 and done["resumes"] == 1


def test_killing_the_runner_stops_its_trainer_frees_the_gpu_and_the_job_can_be_resumed(job_env, fake_trainer):
    fake_trainer(steps=150, delay=0.1)
    job = service.create_job(_spec(job_env, name="first"))
    _wait_for(job["id"], ("Training",))
    trainer = _pid(job_env, job["id"], "trainer.pid")
    os.kill(_pid(job_env, job["id"], "runner.pid"), signal.SIGKILL)
    assert _gone(trainer), "the trainer went on training after its runner was killed"
    ended = _wait_for(job["id"], ("Failed",), timeout=20)
    assert ended["secondary_status"] == "Interrupted" and "cloudlora resume" in ended["failure"]
    second = service.create_job(_spec(job_env, name="second"))  # the GPU is free again
    _wait_for(second["id"], ("Training",))
    service.stop_job(second["id"])
    _wait_for(second["id"], ("Stopped",))
    assert "continues from its last checkpoint" in service.resume_job(job["id"])["message"]
    _wait_for(job["id"], ("Training",))
    service.stop_job(job["id"])
    assert _wait_for(job["id"], ("Stopped",))["secondary_status"] == "Stopped by user (checkpoint kept)"


def test_a_trainer_that_outlives_its_runner_holds_the_gpu_can_be_stopped_or_finishes_and_is_pulled(
        job_env, fake_trainer):
    # A system without a parent-death signal: the trainer keeps running when its runner is killed.
    fake_trainer(steps=150, delay=0.1, outlive_runner=True)
    orphan = service.create_job(_spec(job_env, name="orphan"))
    _wait_for(orphan["id"], ("Training",))
    os.kill(_pid(job_env, orphan["id"], "runner.pid"), signal.SIGKILL)
    time.sleep(1.0)
    still = service.get_job(orphan["id"], auto_pull=False)
    assert still["status"] == "Training" and "its runner was killed; Stop still works" in still["secondary_status"]
    waiting = service.create_job(_spec(job_env, name="waiting"))
    queued = _wait_for(waiting["id"], ("Queued",), timeout=30)  # the orphan still holds the GPU
    assert orphan["id"] in queued["secondary_status"]
    assert "checkpoint" in service.stop_job(orphan["id"])["message"]
    stopped = _wait_for(orphan["id"], ("Stopped", "Failed"))
    assert (stopped["status"], stopped["secondary_status"]) == ("Stopped", "Stopped by user (checkpoint kept)")
    _wait_for(waiting["id"], ("Training",))  # the GPU went to the next job only when the orphan ended

    # The next one finishes on its own after its runner is gone: its LoRA is really there, so it can be pulled.
    os.kill(_pid(job_env, waiting["id"], "runner.pid"), signal.SIGKILL)
    done = _wait_for(waiting["id"], ("Completed", "Failed"), timeout=60)
    assert (done["status"], done["secondary_status"]) == ("Completed", "Finished after its runner was killed")
    pulled = service.pull_job(waiting["id"])
    assert Path(pulled["file"]) == job_env.lora_dir / "waiting.safetensors"


def test_a_job_whose_runner_and_trainer_were_both_killed_is_an_orphan_that_can_start_again(job_env, fake_trainer):
    fake_trainer(steps=150, delay=0.1)
    job = service.create_job(_spec(job_env))
    _wait_for(job["id"], ("Training",))
    # Both die with no word: the runner is frozen first, so it cannot record the trainer's death in between (a race
    # a loaded machine lost), then the trainer (no chance to checkpoint), then the runner.
    runner, trainer = _pid(job_env, job["id"], "runner.pid"), _pid(job_env, job["id"], "trainer.pid")
    os.kill(runner, signal.SIGSTOP)
    os.kill(trainer, signal.SIGKILL)
    os.kill(runner, signal.SIGKILL)
    failed = _wait_for(job["id"], ("Failed",), timeout=20)
    assert failed["secondary_status"] == "Orphaned"
    assert "gone without recording an exit status" in failed["failure"] and "from step 0" in failed["failure"]
    assert "starts again from step 0" in service.resume_job(job["id"])["message"]
    _wait_for(job["id"], ("Training",))
    service.stop_job(job["id"])
    _wait_for(job["id"], ("Stopped",))


def test_only_a_stopped_or_failed_job_can_be_resumed(job_env, fake_trainer):
    fake_trainer(steps=150, delay=0.1)
    job = service.create_job(_spec(job_env))
    _wait_for(job["id"], ("Training",))
    with pytest.raises(UserError, match="only a Stopped or Failed job can be resumed"):
        service.resume_job(job["id"])
    service.stop_job(job["id"])
    _wait_for(job["id"], ("Stopped",))


# --- the client token ---------------------------------------------------------------------------------------------

def test_a_client_token_names_one_request_whatever_else_is_sent_with_it(job_env, fake_trainer):
    fake_trainer(steps=2, delay=0.05)
    first = service.create_job(_spec(job_env, token="form-1", name="mylora"))
    with pytest.raises(records.TokenReused) as renamed:  # the same token with another LoRA name: no second job
        service.create_job(_spec(job_env, token="form-1", name="mylora_v2"))
    assert renamed.value.job_id == first["id"]
    assert "lora_name 'mylora' → 'mylora_v2'" in renamed.value.message and "new client token" in renamed.value.fix
    other = _spec(job_env, token="form-1", name="mylora")
    other.config += "\nmax_train_steps = 7\n"
    with pytest.raises(records.TokenReused, match="the config differs"):  # never the old job, silently
        service.create_job(other)
    again = service.create_job(_spec(job_env, token="form-1", name="mylora"))
    assert (again["id"], again["created"]) == (first["id"], False)
    assert [j["id"] for j in service.list_jobs(auto_pull=False)] == [first["id"]]
    _wait_for(first["id"], ("Completed",))

    # A request that was refused made nothing, so its token can be sent again once it is fixed; a deleted job frees
    # its token too.
    broken = _spec(job_env, token="form-2")
    broken.dataset = "not-uploaded"
    with pytest.raises(UserError, match="not in the store"):
        service.create_job(broken)
    fixed = service.create_job(_spec(job_env, token="form-2"))
    assert fixed["created"] is True
    _wait_for(fixed["id"], ("Completed",))
    service.delete_record(fixed["id"])
    assert service.create_job(_spec(job_env, token="form-2", name="reborn"))["created"] is True


def test_a_reused_token_and_a_bad_job_id_are_400s_over_rest_never_500s(job_env, fake_trainer, api_client):
    from tests.webui.test_jobs_api import _app

    fake_trainer(steps=2, delay=0.05)
    client = api_client(_app())
    body = {"model": job_env.model, "dataset": job_env.dataset, "lora_name": "a", "client_token": "rest-token"}
    assert client.post("/cloudlora/v1/jobs", json=body).status_code == 200
    reused = client.post("/cloudlora/v1/jobs", json={**body, "lora_name": "b"})
    assert reused.status_code == 400 and "already made job" in reused.json()["detail"]["message"]
    for bad in ("%2e%2e", "a%0A", "x%20y"):  # '..', a trailing newline, a space: not job ids
        for method, path in (("GET", ""), ("POST", "/stop"), ("POST", "/resume"), ("POST", "/pull"), ("DELETE", "")):
            r = client.request(method, f"/cloudlora/v1/jobs/{bad}{path}", **({"json": {}} if method == "POST" else {}))
            assert r.status_code == 400, (method, bad, path, r.status_code, r.text[:300])
            assert "is not a training job id" in r.json()["detail"]["message"]
