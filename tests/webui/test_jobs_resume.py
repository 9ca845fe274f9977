"""Resume: a stopped job continues from its checkpoint and ends with the same LoRA as a run that was never stopped
(locally, with the real trainer), and a stopped SageMaker job resumes as a new job from the old checkpoint prefix.
The tab's Resume button, `cloudlora resume` and POST /jobs/{id}/resume all call service.resume_job."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import boto3

from cloudlora.jobs.sagemaker_backend import sagemaker
from cloudlora.jobs import service
from cloudlora.jobs.spec import JobSpec
from cloudlora.ui import train_jobs
from tests.webui.test_jobs_local_machinery import _wait_for
from tests.webui.test_jobs_sagemaker import sagemaker_user  # noqa: F401 - the fixture

STEPS = 30
FAST = {"max_train_steps": str(STEPS), "resolution": "64", "min_bucket_reso": "64", "max_bucket_reso": "128",
        "network_dim": "4", "network_alpha": "4", "learning_rate": "1e-3", "save_precision": "float",
        "sample_prompts": "", "sample_every_n_steps": "0", "sample_every_n_epochs": "0", "cache_latents": "false"}


def _config() -> str:
    from cloudlora_backend.trainer.config.train_config import set_keys

    return set_keys(service.default_config("sd15"), FAST)


def _job(env, name: str) -> dict:
    return service.create_job(JobSpec(model=env.model, dataset=env.dataset, family="sd15", config=_config(),
                                      lora_name=name, backend="local"))


COMPARE = """
import sys
from safetensors.torch import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
assert a.keys() == b.keys(), "different modules"
moved = max(float(t.abs().max()) for k, t in a.items() if "lora_up" in k)
worst = max(float((a[k] - b[k]).abs().max()) for k in a)
print(moved, worst)
"""


def _differ(trainer_python: str, a: Path, b: Path) -> tuple[float, float]:
    """(how far the LoRA moved from zero, the largest difference of the two files), read by the trainer's torch."""
    out = subprocess.run([trainer_python, "-c", COMPARE, str(a), str(b)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    moved, worst = out.stdout.split()
    return float(moved), float(worst)


def test_a_stopped_job_resumed_from_the_tab_ends_with_the_same_lora_as_an_uninterrupted_run(job_env, trainer_python):
    straight = _job(job_env, "straight")
    _wait_for(straight["id"], ("Completed",), timeout=600)

    job = _job(job_env, "resumed")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        seen = service.get_job(job["id"], auto_pull=False)
        if seen["step"] >= 3 or seen["status"] not in ("Starting", "Queued", "Training"):
            break
        time.sleep(0.05)
    service.stop_job(job["id"])
    stopped = _wait_for(job["id"], ("Stopped", "Completed", "Failed"), timeout=300)
    assert stopped["status"] == "Stopped", stopped["failure"]
    assert 3 <= stopped["step"] < STEPS
    resume = train_jobs.OUTPUTS.index("resume")
    assert train_jobs.job_details(job["id"])[resume]["visible"] is True, "the tab shows Resume for a stopped job"

    message = train_jobs.resume_job(job["id"])  # what the Resume button runs
    assert "continues from its last checkpoint" in message, message
    done = _wait_for(job["id"], ("Completed", "Failed", "Stopped"), timeout=600)
    assert done["status"] == "Completed", done["failure"]
    log = "\n".join(service.follow_logs(job["id"], follow=False))
    assert f"resumed from checkpoint at step {stopped['step']}" in log

    moved, worst = _differ(trainer_python,
                           job_env.store_dir / "jobs" / straight["id"] / "model" / "straight.safetensors",
                           job_env.store_dir / "jobs" / job["id"] / "model" / "resumed.safetensors")
    assert moved > 0 and worst < 1e-5 * max(1.0, moved), f"the resumed LoRA differs by {worst}"
    assert train_jobs.job_details(job["id"])[resume]["visible"] is False, "a completed job is not resumable"


def test_a_stopped_sagemaker_job_resumes_over_rest_as_a_new_job_from_the_old_checkpoints(
        sagemaker_user, monkeypatch, api_client):
    from tests.webui.test_jobs_api import _app
    from tests.webui.test_jobs_sagemaker import _capture_create, _spec

    sent = _capture_create(monkeypatch)
    job = service.create_job(_spec(client_token="resume-me"), sagemaker_user)
    # It was stopped at step 40 after 15 minutes; SageMaker had synced /opt/ml/checkpoints to the checkpoint prefix.
    s3 = boto3.client("s3")
    s3.put_object(Bucket="cloudlora-store", Key=f"scratch/{job['id']}/checkpoints/state.pt", Body=b"state")
    real_describe = sagemaker.describe

    def describe(settings, name, client=None):
        desc = real_describe(settings, name, client)
        if name == job["id"]:
            desc = {**desc, "TrainingJobStatus": "Stopped", "SecondaryStatus": "Stopped",
                    "BillableTimeInSeconds": 900, "TrainingTimeInSeconds": 900}
        return desc

    monkeypatch.setattr(sagemaker, "describe", describe)
    shown = service.get_job(job["id"], sagemaker_user, auto_pull=False)
    assert shown["status"] == "Stopped" and shown["resumable"] is True

    r = api_client(_app()).post(f"/cloudlora/v1/jobs/{job['id']}/resume", json={})
    assert r.status_code == 200, r.text
    assert f"resumed as SageMaker job {job['id']}-r1" in r.json()["message"]
    assert "continues from the checkpoint" in r.json()["message"]
    assert [req["TrainingJobName"] for req in sent] == [job["id"], f"{job['id']}-r1"]
    first, again = sent
    for same in ("CheckpointConfig", "InputDataConfig", "OutputDataConfig", "HyperParameters", "AlgorithmSpecification",
                 "StoppingCondition", "EnableManagedSpotTraining"):
        assert again[same] == first[same], same  # the old checkpoint prefix: the trainer starts from state.pt
    assert first["CheckpointConfig"]["S3Uri"] == f"s3://cloudlora-store/scratch/{job['id']}/checkpoints/"

    # The record follows the new SageMaker job (moto completes it at once), and the first run's cost still counts.
    after = service.get_job(job["id"], sagemaker_user, auto_pull=False)
    assert after["resumes"] == 1 and after["status"] == "Completed"
    assert after["cost_usd"] >= 900 / 3600 * 1.52 - 1e-6
    again_refused = api_client(_app()).post(f"/cloudlora/v1/jobs/{job['id']}/resume", json={})
    assert again_refused.status_code == 400
    assert "only a Stopped or Failed job" in again_refused.json()["detail"]["message"]
