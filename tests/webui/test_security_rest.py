"""The REST routes inside the WebUI refuse what a web page the user visits could send them: "simple" cross-site
POSTs, foreign Origins, DNS-rebinding Host names and client-chosen folders; and they follow A1111's --api convention."""
from __future__ import annotations

import pytest
from fastapi import FastAPI

from cloudlora import api
from cloudlora.api import PREFIX, guard

from .test_foundation_webui import fake_webui  # noqa: F401  (the fake A1111 `modules`)

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def setup_calls(monkeypatch):
    """Records AWS setup starts instead of running them."""
    from cloudlora.aws import tasks

    calls = []
    monkeypatch.setattr(tasks, "start", lambda action, **kw: calls.append(action) or "task-1")
    return calls


def _app(policy=None):
    app = FastAPI()
    api.mount(app, None, policy)
    return app


def test_a_simple_cross_site_post_cannot_start_aws_setup(api_client, setup_calls):
    client = api_client(_app())
    r = client.post(f"{PREFIX}/setup", content=b'{"action": "setup"}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert "application/json" in r.json()["detail"]["message"]
    assert setup_calls == []
    # a form post, or one with no body at all, is just as refused
    assert client.post(f"{PREFIX}/setup", data={"action": "setup"}).status_code == 415
    assert client.post(f"{PREFIX}/setup").status_code == 415
    assert setup_calls == []
    assert client.post(f"{PREFIX}/setup", json={"action": "setup"}).json() == {"task_id": "task-1"}
    assert setup_calls == ["setup"]


@pytest.mark.parametrize("path", ["/jobs/cl-x-0123456789/stop", "/jobs/cl-x-0123456789/pull",
                                  "/models/tasks/t1/cancel", "/datasets/tasks/t1/cancel"])
def test_posts_without_a_body_need_json_too(api_client, path):
    r = api_client(_app()).post(PREFIX + path)
    assert r.status_code == 415, r.text


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},  # a sandboxed frame or a file:// page
    {"Origin": "http://127.0.0.1:9999"},  # another app on this machine
    {"Sec-Fetch-Site": "cross-site"},  # a browser that sent no Origin (an <img>, a link)
    {"Sec-Fetch-Site": "same-site"},  # http://localhost:8888 is "same-site" to http://localhost:7860
])
def test_requests_from_another_web_page_are_refused(api_client, setup_calls, headers):
    client = api_client(_app())
    r = client.post(f"{PREFIX}/setup", json={"action": "setup"}, headers=headers)
    assert r.status_code == 403 and "another web page" in r.json()["detail"]["message"]
    assert client.get(f"{PREFIX}/jobs", headers=headers).status_code == 403
    assert setup_calls == []


def test_the_apps_own_page_and_scripts_get_in(api_client, setup_calls):
    client = api_client(_app())
    own = {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"}
    assert client.post(f"{PREFIX}/setup", json={"action": "setup"}, headers=own).status_code == 200
    assert client.get(f"{PREFIX}/version", headers={"Sec-Fetch-Site": "none"}).status_code == 200  # typed in
    assert client.get(f"{PREFIX}/version").status_code == 200  # curl
    assert setup_calls == ["setup"]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:7860", "attacker.localhost.evil.example",
                                  "127.0.0.1.nip.io"])
def test_a_dns_rebinding_host_name_is_refused(api_client, setup_calls, host):
    client = api_client(_app())
    r = client.post(f"{PREFIX}/setup", json={"action": "setup"}, headers={"Host": host})
    assert r.status_code == 403
    assert "CLOUDLORA_ALLOWED_HOSTS" in r.json()["detail"]["fix"]
    assert client.get(f"{PREFIX}/version", headers={"Host": host}).status_code == 403
    assert setup_calls == []


@pytest.mark.parametrize("host", ["127.0.0.1:7860", "localhost:7860", "[::1]:7860", "192.168.1.20:7860"])
def test_this_machines_addresses_are_accepted(api_client, host):
    assert api_client(_app()).get(f"{PREFIX}/version", headers={"Host": host}).status_code == 200


def test_the_loopback_only_policy_of_the_standalone_app_refuses_lan_addresses():
    policy = guard.Policy(ip_hosts=False)
    assert guard.refusal(policy, "GET", {"host": "192.168.1.20:7860"}).status == 403
    assert guard.refusal(policy, "GET", {"host": "127.0.0.1:7860"}) is None


def test_pull_into_a_folder_outside_the_lora_folders_is_refused_and_creates_nothing(api_client, tmp_path,
                                                                                     monkeypatch):
    loras = tmp_path / "Lora"
    monkeypatch.setenv("CLOUDLORA_LORA_DIR", str(loras))
    client = api_client(_app())
    for target in [tmp_path / "elsewhere", loras / ".." / "escaped", "relative/Lora", "/etc/cron.d"]:
        r = client.post(f"{PREFIX}/jobs/cl-x-0123456789/pull", json={"lora_dir": str(target)})
        assert r.status_code == 400, (target, r.text)
        assert "is not one of the Lora folders" in r.json()["detail"]["message"]
        assert str(loras) in r.json()["detail"]["fix"]
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "escaped").exists()
    # a folder inside the Lora folder is fine: the job is then looked up (and here does not exist)
    inside = client.post(f"{PREFIX}/jobs/cl-x-0123456789/pull", json={"lora_dir": str(loras / "characters")})
    assert inside.status_code == 404


# --- inside the WebUI: A1111's --api convention and the names the user configured ---

def _started(fake, monkeypatch, **cmd_opts):
    from cloudlora import webui

    for k, v in cmd_opts.items():
        monkeypatch.setattr(fake.shared.cmd_opts, k, v)
    webui.setup()
    app = FastAPI()
    webui.on_app_started(None, app)
    return app


def test_without_api_the_webui_mounts_no_rest_route_and_the_tabs_still_work(fake_webui, monkeypatch, api_client):
    app = _started(fake_webui, monkeypatch)
    assert api_client(app).get(f"{PREFIX}/version").status_code == 404
    assert not [r for r in app.routes if getattr(r, "path", "").startswith(PREFIX)]
    from cloudlora.ui import build_tabs

    assert [title for _blocks, title, _id in build_tabs()] == ["Cloud Asset Management", "Train Management"]


@pytest.mark.parametrize("flag", ["api", "nowebui"])
def test_with_api_or_nowebui_the_routes_are_mounted(fake_webui, monkeypatch, api_client, flag):
    app = _started(fake_webui, monkeypatch, **{flag: True})
    assert api_client(app).get(f"{PREFIX}/version").status_code == 200


def test_names_the_user_gave_the_webui_are_accepted_and_others_not(fake_webui, monkeypatch, api_client):
    monkeypatch.setenv("CLOUDLORA_ALLOWED_HOSTS", "studio.lan, Render-Box")
    app = _started(fake_webui, monkeypatch, api=True, server_name="gpu-box.local")
    client = api_client(app)
    for host in ("studio.lan:7860", "render-box", "gpu-box.local:7860"):
        assert client.get(f"{PREFIX}/version", headers={"Host": host}).status_code == 200, host
    assert client.get(f"{PREFIX}/version", headers={"Host": "x.gradio.live"}).status_code == 403
    shared = _started(fake_webui, monkeypatch, api=True, share=True)
    assert api_client(shared).get(f"{PREFIX}/version", headers={"Host": "x.gradio.live"}).status_code == 200


def test_only_the_explicit_origins_of_cors_allow_origins_are_trusted(fake_webui, monkeypatch, api_client):
    app = _started(fake_webui, monkeypatch, api=True, cors_allow_origins="https://front.example,*")
    client = api_client(app)
    assert client.get(f"{PREFIX}/version", headers={"Origin": "https://front.example"}).status_code == 200
    assert client.get(f"{PREFIX}/version", headers={"Origin": "http://evil.example"}).status_code == 403
