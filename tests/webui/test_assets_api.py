"""REST: /cloudlora/v1/models and /datasets call the same functions as the CLI; uploads run in the background."""
from __future__ import annotations

import time

from fastapi import FastAPI

from cloudlora import api
from tests.webui.test_assets_datasets import good_dataset, png
from tests.webui.test_assets_family import SD15, write_safetensors


def wait_task(client, url: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(url).json()
        if body["status"] not in ("running", "cancelling"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"{url} still running after {timeout}s")


def test_upload_list_check_and_delete_over_rest(api_client, tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    app = FastAPI()
    api.mount(app, None)
    client = api_client(app)
    model = write_safetensors(tmp_path / "base.safetensors", {k: (8, 4) for k in SD15})

    r = client.post("/cloudlora/v1/models/upload", json={"path": str(model)})
    assert r.status_code == 200, r.text
    done = wait_task(client, f"/cloudlora/v1/models/tasks/{r.json()['task_id']}")
    assert done["status"] == "done" and done["result"]["family"] == "sd15", done
    assert done["progress"]["phase"] == "done"
    listed = client.get("/cloudlora/v1/models").json()
    assert [m["name"] for m in listed["models"]] == ["base"] and listed["total_bytes"] == model.stat().st_size
    assert client.get("/cloudlora/v1/models/base").json()["sha256"] == done["result"]["sha256"]

    missing = client.post("/cloudlora/v1/models/upload", json={"path": str(tmp_path / "nope.safetensors")})
    assert missing.status_code == 400 and "does not exist" in missing.json()["detail"]["message"]

    root = good_dataset(tmp_path / "ds", n=2)
    report = client.post("/cloudlora/v1/datasets/check", json={"path": str(root)}).json()
    assert report["ok"] and report["summary"]["images_per_epoch"] == 20 and len(report["items"]) == 2
    png(root / "cats" / "1.png")
    refused = client.post("/cloudlora/v1/datasets/upload", json={"path": str(root)})
    assert refused.status_code == 400 and "nothing was uploaded" in refused.json()["detail"]["message"]
    (root / "cats" / "1.png").unlink()
    (root / "cats").rmdir()
    r = client.post("/cloudlora/v1/datasets/upload", json={"path": str(root), "name": "faces"})
    done = wait_task(client, f"/cloudlora/v1/datasets/tasks/{r.json()['task_id']}")
    assert done["status"] == "done" and done["result"]["files_sent"] == 4
    assert [d["name"] for d in client.get("/cloudlora/v1/datasets").json()["datasets"]] == ["faces"]

    assert client.delete("/cloudlora/v1/datasets/faces").json()["objects"] > 0
    assert client.delete("/cloudlora/v1/models/base").status_code == 200
    assert client.get("/cloudlora/v1/models").json()["models"] == []
    assert client.delete("/cloudlora/v1/models/base").status_code == 404
    assert client.get("/cloudlora/v1/models/tasks/nope").status_code == 404
