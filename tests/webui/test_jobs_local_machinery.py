"""The local backend's job machinery: idempotent submit, queue, stop, restart, orphans, failures.

These run tests/webui/jobs_support/fake_trainer.py in place of the trainer (same container contract, seconds
instead of minutes); test_jobs_end_to_end.py runs the real trainer.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cloudlora.jobs import service
from cloudlora.jobs.spec import JobSpec


def _spec(env, token="", name="demo_lora") -> JobSpec:
    return JobSpec(model=env.model, dataset=env.dataset, family="sd15", config=service.default_config("sd15"),
                   lora_name=name, backend="local", client_token=token)


def _wait_for(job_id, statuses, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = service.get_job(job_id, auto_pull=False)
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    run = Path(os.environ["CLOUDLORA_STORE"]) / "jobs" / job_id / "runner"
    files = {p.name: p.read_text(errors="replace")[-1500:] for p in sorted(run.iterdir())} if run.is_dir() else {}
    raise AssertionError(f"{job_id} never reached {statuses}; last: {job['status']} {job['secondary_status']} {job['failure'][:400]}\n"
                         f"runner files: {files}")


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "cloudlora", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def test_a_double_click_on_create_makes_one_job(job_env, fake_trainer):
    fake_trainer(steps=3, delay=0.05)
    results = []
    threads = [threading.Thread(target=lambda: results.append(service.create_job(_spec(job_env, "token-1"))))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    again = service.create_job(_spec(job_env, "token-1"))
    assert len({r["id"] for r in results + [again]}) == 1
    assert sorted(r["created"] for r in results) == [False, True] and again["created"] is False
    assert [j["id"] for j in service.list_jobs(auto_pull=False)] == [again["id"]]
    _wait_for(again["id"], ("Completed",))


def test_a_new_process_lists_and_follows_a_running_job(job_env, fake_trainer):
    fake_trainer(steps=12, delay=0.25)
    job = service.create_job(_spec(job_env))
    _wait_for(job["id"], ("Training",))
    listed = json.loads(_cli("jobs", "--json").stdout)  # a "restarted WebUI": nothing shared but the files
    assert [(j["id"], j["status"]) for j in listed] == [(job["id"], "Training")]
    follow = _cli("logs", job["id"], "--follow")
    assert follow.returncode == 0, follow.stderr
    assert "step=12/12" in follow.stdout and "finished: exit 0" in follow.stdout
    shown = json.loads(_cli("job", "show", job["id"], "--json").stdout)
    assert shown["status"] == "Completed" and (shown["step"], shown["total_steps"]) == (12, 12)
    assert [p["step"] for p in shown["loss_points"]] == list(range(1, 13))


def test_jobs_wait_in_a_queue_for_the_one_gpu_and_stop_saves_a_checkpoint(job_env, fake_trainer):
    fake_trainer(steps=200, delay=0.1)
    first = service.create_job(_spec(job_env, name="first"))
    _wait_for(first["id"], ("Training",))
    second = service.create_job(_spec(job_env, name="second"))
    time.sleep(1.0)
    queued = service.get_job(second["id"], auto_pull=False)
    assert queued["status"] == "Queued", queued
    stopped = service.stop_job(first["id"])
    assert "checkpoint" in stopped["message"]
    done = _wait_for(first["id"], ("Stopped", "Failed"))
    assert done["status"] == "Stopped"
    jobdir = job_env.store_dir / "jobs" / first["id"]
    assert (jobdir / "checkpoints" / "state.txt").read_text().isdigit()
    _wait_for(second["id"], ("Training",))  # the queue moves on
    service.stop_job(second["id"])
    assert _wait_for(second["id"], ("Stopped",))["status"] == "Stopped"


def test_a_job_whose_runner_was_killed_is_reported_as_an_orphan(job_env, fake_trainer):
    fake_trainer(steps=200, delay=0.1)
    job = service.create_job(_spec(job_env))
    _wait_for(job["id"], ("Training",))
    run = job_env.store_dir / "jobs" / job["id"] / "runner"
    runner = int((run / "runner.pid").read_text())
    # The runner frozen first, so it never sees its trainer end and records nothing (killed one after the other, a
    # busy machine let it record the trainer's SIGKILL in between); then the trainer, with no chance to checkpoint.
    os.kill(runner, signal.SIGSTOP)
    os.kill(int((run / "trainer.pid").read_text()), signal.SIGKILL)
    os.kill(runner, signal.SIGKILL)
    failed = _wait_for(job["id"], ("Failed",), timeout=20)
    assert failed["secondary_status"] == "Orphaned"
    assert "gone without recording an exit status" in failed["failure"]


def test_a_failed_job_is_explained_in_plain_words_with_the_fix(job_env, fake_trainer):
    fake_trainer(steps=2, delay=0.05, fail="torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    job = service.create_job(_spec(job_env))
    failed = _wait_for(job["id"], ("Failed",))
    assert failed["explanation"]["cause"] == "oom"
    assert "ran out of memory" in failed["explanation"]["message"]
    assert "train_batch_size" in failed["explanation"]["fix"]
    cli = _cli("job", "show", job["id"])
    assert "why: The GPU ran out of memory." in cli.stdout


def test_a_completed_job_is_pulled_once_and_never_overwrites_another_lora(job_env, fake_trainer):
    fake_trainer(steps=2, delay=0.05)
    job_env.lora_dir.mkdir(parents=True)
    (job_env.lora_dir / "demo_lora.safetensors").write_bytes(b"someone else's LoRA")
    job = service.create_job(_spec(job_env))
    _wait_for(job["id"], ("Completed",))
    listed = service.list_jobs()  # a refresh that sees it Completed pulls it
    assert listed[0]["pulled"] == [str(job_env.lora_dir / "demo_lora-1.safetensors")]
    service.list_jobs()
    assert (job_env.lora_dir / "demo_lora.safetensors").read_bytes() == b"someone else's LoRA"
    assert sorted(p.name for p in job_env.lora_dir.iterdir()) == [
        "demo_lora-1.json", "demo_lora-1.preview.png", "demo_lora-1.safetensors", "demo_lora.safetensors"]
    from cloudlora.library.pull import read_metadata

    assert read_metadata(job_env.lora_dir / "demo_lora-1.safetensors")["ss_output_name"] == "demo_lora-1"
    again = service.pull_job(job["id"])
    assert again["renamed"] and again["name"] == "demo_lora-2" and "already taken" in again["message"]


def test_delete_record_refuses_a_running_job_and_removes_a_finished_one(job_env, fake_trainer):
    fake_trainer(steps=100, delay=0.1)
    from cloudlora.errors import UserError

    job = service.create_job(_spec(job_env))
    _wait_for(job["id"], ("Training",))
    with pytest.raises(UserError, match="Stop it first"):
        service.delete_record(job["id"])
    service.stop_job(job["id"])
    _wait_for(job["id"], ("Stopped",))
    assert service.delete_record(job["id"])["deleted"]
    assert service.list_jobs() == []
    assert not (job_env.store_dir / "jobs" / job["id"]).exists()
    assert (job_env.store_dir / "models" / "tiny-sd15").is_dir(), "the model must survive a job's deletion"


def test_a_local_job_on_an_s3_store_downloads_its_inputs_and_keeps_its_record_in_the_bucket(
        aws_env, monkeypatch, tmp_path, tiny_sd15, sample_dataset, fake_trainer):
    import boto3

    from cloudlora import settings
    from cloudlora.assets.datasets import upload_dataset
    from cloudlora.assets.models import upload_model
    from cloudlora.store import open_store

    boto3.client("s3").create_bucket(Bucket="store")
    monkeypatch.setenv("CLOUDLORA_BUCKET", "store")
    monkeypatch.setenv("CLOUDLORA_BACKEND", "local")
    monkeypatch.setenv("CLOUDLORA_LORA_DIR", str(tmp_path / "Lora"))
    s = settings.resolve()
    store = open_store(s)
    upload_model(store, tiny_sd15, name="tiny-sd15")
    upload_dataset(store, sample_dataset, name="demo")
    fake_trainer(steps=2, delay=0.05)
    job = service.create_job(JobSpec(model="tiny-sd15", dataset="demo", family="sd15",
                                     config=service.default_config("sd15"), lora_name="s3_local"), s)
    assert job["backend"] == "local"
    jobdir = settings.data_dir() / "jobs" / job["id"]
    try:
        done = _wait_for(job["id"], ("Completed",))
    finally:
        from tests.webui.fixtures.jobs import _kill_jobs

        _kill_jobs(settings.data_dir())
    assert (jobdir / "input/data/model/tiny-sd15.safetensors").read_bytes() == tiny_sd15.read_bytes()
    assert sorted(p.name for p in (jobdir / "input/data/dataset").iterdir()) == ["10_cldemo"]
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="store", Prefix="jobs/")["Contents"]]
    assert keys == [f"jobs/{job['id']}/job.json"]
    assert done["status"] == "Completed"
    assert service.get_job(job["id"])["pulled"] == [str(tmp_path / "Lora" / "s3_local.safetensors")]


def test_an_intermediate_epoch_file_can_be_pulled_and_the_final_lora_is_still_auto_pulled(job_env, fake_trainer):
    fake_trainer(steps=2, delay=0.05)
    job = service.create_job(_spec(job_env, name="epochs"))
    _wait_for(job["id"], ("Completed",))
    assert [p.rsplit("/", 1)[-1] for p in service.job_outputs(job["id"])] == [
        "epochs-000001.safetensors", "epochs.safetensors"]
    early = service.pull_job(job["id"], file="epochs-000001.safetensors")
    assert early["name"] == "epochs-000001" and not early["renamed"]
    pulled = service.get_job(job["id"])["pulled"]  # the refresh still auto-pulls the final file
    assert pulled == [str(job_env.lora_dir / "epochs-000001.safetensors"), str(job_env.lora_dir / "epochs.safetensors")]


def test_a_refresh_that_read_the_job_before_it_was_pulled_never_drops_the_pull_so_the_lora_lands_once(
        job_env, fake_trainer):
    # Forge's queue runs a page's refreshes at once: one can read the record while the job still trains, and save
    # what it learned (Completed) after another refresh has pulled the LoRA. That save once dropped the pull, and
    # the next refresh pulled the LoRA again as demo_lora-1 (seen in the Forge host test under CI's load).
    from cloudlora.jobs import records, status
    from cloudlora.jobs.job_store import open_job_store, resolve_settings

    fake_trainer(steps=30, delay=0.1)
    job = service.create_job(_spec(job_env))
    _wait_for(job["id"], ("Training",))
    settings = resolve_settings(None)
    store = open_job_store(settings)
    slow = records.load(store, job["id"])  # a slow refresh has read the record: Training
    assert slow.status == "Training"
    _wait_for(job["id"], ("Completed",))
    assert service.list_jobs()[0]["pulled"] == [str(job_env.lora_dir / "demo_lora.safetensors")]
    status.refresh(slow, settings, store)  # ... and saves what it learned only now
    assert service.list_jobs()[0]["pulled"] == [str(job_env.lora_dir / "demo_lora.safetensors")]
    assert sorted(p.name for p in job_env.lora_dir.iterdir()) == [
        "demo_lora.json", "demo_lora.preview.png", "demo_lora.safetensors"]
