"""The REST routes for jobs call the same service as the tab and the CLI: create (idempotent), list, get, stop,
pull, delete; user-fixable problems answer 400 with the fix, unknown jobs 404; all are in the OpenAPI."""
from __future__ import annotations

import time

from fastapi import FastAPI

from cloudlora.api import PREFIX, mount


def _app():
    app = FastAPI()
    mount(app, None)
    return app


def _wait(client, job_id, statuses, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"{PREFIX}/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.3)
    raise AssertionError(f"{job_id}: {job['status']}")


def test_a_job_is_created_followed_pulled_and_deleted_over_rest(job_env, fake_trainer, api_client):
    fake_trainer(steps=4, delay=0.1)
    client = api_client(_app())
    body = {"model": job_env.model, "dataset": job_env.dataset, "lora_name": "rest_lora",
            "set": {"max_train_steps": "4"}, "client_token": "rest-1"}
    created = client.post(f"{PREFIX}/jobs", json=body)
    assert created.status_code == 200, created.text
    job = created.json()
    assert job["created"] is True and job["family"] == "sd15" and job["backend"] == "local"
    again = client.post(f"{PREFIX}/jobs", json=body).json()
    assert again["id"] == job["id"] and again["created"] is False
    done = _wait(client, job["id"], ("Completed",))
    assert done["loss_points"] and done["step"] == 4
    assert [j["id"] for j in client.get(f"{PREFIX}/jobs").json()] == [job["id"]]
    assert "step=4/4 loss=0.2500 lr=0.0001 it/s=5.0" in client.get(f"{PREFIX}/jobs/{job['id']}/logs").json()["lines"]
    pulled = client.post(f"{PREFIX}/jobs/{job['id']}/pull", json={"lora_dir": str(job_env.lora_dir / "other")})
    assert pulled.status_code == 200 and pulled.json()["file"] == str(job_env.lora_dir / "other" / "rest_lora.safetensors")
    assert client.delete(f"{PREFIX}/jobs/{job['id']}").json()["deleted"] is True
    assert client.get(f"{PREFIX}/jobs/{job['id']}").status_code == 404


def test_a_job_for_a_missing_dataset_is_refused_with_the_fix(job_env, api_client):
    client = api_client(_app())
    r = client.post(f"{PREFIX}/jobs", json={"model": job_env.model, "dataset": "nope", "lora_name": "x"})
    assert r.status_code == 400
    assert "'nope' is not in the store" in r.json()["detail"]["message"]
    assert "cloudlora dataset upload" in r.json()["detail"]["fix"]


def test_the_job_routes_are_in_the_openapi_schema(api_client):
    paths = api_client(_app()).get("/openapi.json").json()["paths"]
    assert {"post", "get"} <= set(paths[f"{PREFIX}/jobs"])
    assert {"get", "delete"} <= set(paths[f"{PREFIX}/jobs/{{job_id}}"])
    for action in ("stop", "pull", "logs"):
        assert f"{PREFIX}/jobs/{{job_id}}/{action}" in paths
    assert f"{PREFIX}/jobs/estimate" in paths
