"""REST /cloudlora/v1/config/*: the same check/format/defaults the tab and the CLI use."""
from __future__ import annotations

from fastapi import FastAPI

from cloudlora.api import mount


def _client(api_client):
    app = FastAPI()
    mount(app, None)
    return api_client(app)


def test_defaults_route_gives_the_family_toml_and_refuses_an_unknown_family(api_client):
    c = _client(api_client)
    r = c.get("/cloudlora/v1/config/defaults", params={"family": "sd15"})
    assert r.status_code == 200 and 'resolution = "512,512"' in r.json()["text"]
    assert c.get("/cloudlora/v1/config/defaults", params={"family": "sd3"}).status_code == 400


def test_check_route_reports_errors_and_warnings(api_client):
    r = _client(api_client).post("/cloudlora/v1/config/check",
                                 json={"text": "network_dimm = 4\nLoRA_type = \"x\"\n", "family": "sdxl"})
    body = r.json()
    assert r.status_code == 200 and body["ok"] is False
    assert "did you mean 'network_dim'" in body["errors"][0] and "LoRA_type" in body["warnings"][0]


def test_format_route_normalises_or_answers_400_with_every_problem(api_client):
    c = _client(api_client)
    r = c.post("/cloudlora/v1/config/format", json={"text": "# keep\nresolution = 640\n"})
    assert r.status_code == 200 and r.json()["text"] == '# keep\nresolution = "640,640"\n'
    r = c.post("/cloudlora/v1/config/format", json={"text": "seed = -1\nfoo = 2\n"})
    assert r.status_code == 400 and len(r.json()["detail"]["errors"]) == 2
