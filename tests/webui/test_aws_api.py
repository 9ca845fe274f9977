"""REST: GET /cloudlora/v1/doctor, and setup as a background task that the caller polls (POST /setup, GET /setup/id)."""
from __future__ import annotations

import time

import pytest
from fastapi import FastAPI

from cloudlora import api
from cloudlora.aws import tasks


@pytest.fixture
def client(api_client):
    app = FastAPI()
    api.mount(app, None)
    return api_client(app)


def _wait(client, task_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/cloudlora/v1/setup/{task_id}").json()
        if body["state"] != "running" or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_the_doctor_route_reports_every_check_and_the_missing_credentials(client):
    r = client.get("/cloudlora/v1/doctor", params={"instance_type": ["ml.g5.xlarge", "ml.g6e.xlarge"],
                                                   "backend": "sagemaker"})
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is False
    creds = next(c for c in body["checks"] if c["name"] == "aws credentials")
    assert creds["status"] == "problem" and "aws configure" in creds["fix"]
    assert {"python", "local gpu", "region", "bucket"} <= {c["name"] for c in body["checks"]}
    # The default here is the local backend, which needs no AWS: the same line is information.
    local = client.get("/cloudlora/v1/doctor").json()
    creds = next(c for c in local["checks"] if c["name"] == "aws credentials")
    assert creds["status"] == "skip" and "Not needed" in creds["detail"] and local["ok"] is True


def test_setup_runs_in_the_background_and_its_failure_is_polled_with_the_fix(client, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # but no credentials
    r = client.post("/cloudlora/v1/setup", json={"action": "setup"})
    assert r.status_code == 200
    body = _wait(client, r.json()["task_id"])
    assert body["state"] == "failed"
    assert "No AWS credentials found" in body["error"] and "aws configure" in body["fix"]


def test_delete_through_rest_reports_a_missing_stack_as_nothing_to_delete(client, aws_env):
    r = client.post("/cloudlora/v1/setup", json={"action": "delete"})
    body = _wait(client, r.json()["task_id"])
    assert body["state"] == "done", body
    assert any("does not exist" in m for m in body["messages"])


def test_an_unknown_task_is_404_and_an_unknown_action_is_400(client):
    assert client.get("/cloudlora/v1/setup/nope").status_code == 404
    r = client.post("/cloudlora/v1/setup", json={"action": "explode"})
    assert r.status_code == 400 and "Unknown action" in r.json()["detail"]["message"]


def test_a_second_setup_while_one_runs_joins_the_running_one(monkeypatch):
    import threading

    from cloudlora.aws import setup as aws_setup

    release = threading.Event()

    def slow_setup(settings, progress, force_build=False):
        progress("working")
        release.wait(10)
        raise aws_setup.UserError("stopped by the test")

    monkeypatch.setattr(aws_setup, "setup", slow_setup)
    first = tasks.start("setup")
    try:
        assert tasks.start("setup") == first
    finally:
        release.set()
    deadline = time.monotonic() + 10
    while tasks.get(first)["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tasks.get(first)["messages"] == ["working"] and tasks.get(first)["state"] == "failed"
