"""The standalone app (`cloudlora ui`, gradio 3.41 here) is reachable only by its user: everything needs the token
of the URL it prints; foreign Host names (DNS rebinding) and other web pages are refused, with no CORS; files come
only from what it shows; and its handlers act on the folders the server chose, never on paths a client sends."""
from __future__ import annotations

import http.client
import json
import os
import stat
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]


class Raw:
    """Plain HTTP to the app, with full control of Host, Origin and cookies (what a browser or an attacker sends)."""

    def __init__(self, url: str, token: str):
        parts = urlparse(url)
        self.host, self.port, self.token = parts.hostname, parts.port, token
        self.own = f"127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body=None, headers: dict | None = None, token: bool = False):
        headers = {"Host": self.own, **(headers or {})}
        if token:
            headers["Cookie"] = f"cloudlora-token-{self.port}={self.token}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def event(self, elem_id: str) -> tuple[int, int]:
        """(fn_index, number of inputs) of the event triggered by the component `elem_id`, as an attacker reads them
        in /config."""
        _status, _h, body = self.request("GET", "/config", token=True)
        config = json.loads(body)
        ids = [c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id]
        for i, dep in enumerate(config["dependencies"]):
            if any((t[0] if isinstance(t, list) else t) in ids for t in dep["targets"]):
                return i, len(dep["inputs"])
        raise AssertionError(f"no event on {elem_id}")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("standalone-home")


@pytest.fixture(scope="module")
def app(home):
    """One `cloudlora ui` for this module (starting gradio takes seconds), in its own throwaway home."""
    import secrets
    import subprocess
    import sys
    import time

    from .fixtures.browser import _answers, _free_port, _stop

    token, port = secrets.token_urlsafe(16), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CLOUDLORA_"))}
    env.update({"CLOUDLORA_CONFIG_DIR": str(home / "config"), "CLOUDLORA_DATA_DIR": str(home / "data"),
                "AWS_CONFIG_FILE": str(home / "aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-creds"),
                "AWS_EC2_METADATA_DISABLED": "true", "GRADIO_ANALYTICS_ENABLED": "False",
                "CLOUDLORA_UI_TOKEN": token})
    log = home / "ui.log"
    proc = subprocess.Popen([sys.executable, "-m", "cloudlora", "ui", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not _answers(f"http://127.0.0.1:{port}/cloudlora/v1/version", token):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.5)
        yield Raw(f"http://127.0.0.1:{port}/?token={token}", token)
    finally:
        _stop(proc)


def test_nothing_answers_without_the_token(app):
    for method, path in [("GET", "/"), ("GET", "/config"), ("GET", "/info"), ("POST", "/run/predict"),
                         ("POST", "/api/predict"), ("POST", "/upload"), ("GET", "/cloudlora/v1/version"),
                         ("GET", "/cloudlora/v1/jobs")]:
        status, _h, body = app.request(method, path, body={"fn_index": 0, "data": []} if method == "POST" else None)
        assert status == 401, (method, path, status, body[:200])
    status, _h, body = app.request("GET", "/", headers={"Cookie": f"cloudlora-token-{app.port}=wrong"})
    assert status == 401 and b"?token=" in body


def test_the_printed_url_trades_its_token_for_a_private_cookie(app):
    status, headers, _ = app.request("GET", f"/?token={app.token}")
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"cloudlora-token-{app.port}={app.token};")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    status, _h, body = app.request("GET", "/", token=True)
    assert status == 200 and b"gradio" in body.lower()
    status, _h, _ = app.request("GET", "/cloudlora/v1/version", headers={"X-CloudLoRA-Token": app.token})
    assert status == 200  # scripts use the header


def test_the_websocket_of_gradios_queue_needs_the_token_and_the_apps_own_origin(app):
    import websockets.sync.client as ws_client  # websockets 11 (gradio 3.41's) has the sync client
    from websockets.exceptions import InvalidStatus

    url = f"ws://127.0.0.1:{app.port}/queue/join"
    for headers in ({}, {"Cookie": f"cloudlora-token-{app.port}={app.token}", "Origin": "http://evil.example"}):
        with pytest.raises(InvalidStatus) as err:
            ws_client.connect(url, additional_headers=headers, open_timeout=10).close()
        assert err.value.response.status_code == 403
    import gradio

    if int(gradio.__version__.split(".")[0]) < 4:  # 4.x queues over HTTP (server-sent events), not a websocket
        ok = ws_client.connect(url, additional_headers={"Cookie": f"cloudlora-token-{app.port}={app.token}",
                                                        "Origin": f"http://127.0.0.1:{app.port}"}, open_timeout=10)
        ok.close()


@pytest.mark.parametrize("host", ["evil.example", f"evil.example:{7860}", "rebind.attacker.example:80",
                                  "192.168.1.20"])
def test_a_foreign_host_is_refused_even_with_the_token(app, host):
    for method, path in [("GET", "/"), ("GET", "/cloudlora/v1/version"), ("POST", "/run/predict")]:
        status, _h, _ = app.request(method, path, token=True, headers={"Host": host},
                                    body={"fn_index": 0, "data": []} if method == "POST" else None)
        assert status == 403, (host, method, path)


def test_other_web_pages_get_no_cors_and_are_refused(app):
    evil = {"Origin": "http://evil.example"}
    status, headers, _ = app.request("OPTIONS", "/cloudlora/v1/setup", token=True, headers={
        **evil, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert "access-control-allow-origin" not in headers and status in (403, 405)
    for method, path in [("GET", "/config"), ("GET", "/cloudlora/v1/jobs"), ("POST", "/run/predict")]:
        status, headers, _ = app.request(method, path, token=True, headers=evil,
                                         body={"fn_index": 0, "data": []} if method == "POST" else None)
        assert status == 403, (method, path)
        assert "access-control-allow-origin" not in headers
    # the app's own page is fine, and gets no CORS header either (it needs none)
    status, headers, _ = app.request("GET", "/config", token=True, headers={"Origin": f"http://{app.own}"})
    assert status == 200 and "access-control-allow-origin" not in headers


def test_a_simple_cross_site_post_cannot_start_aws_setup(app):
    status, _h, body = app.request("POST", "/cloudlora/v1/setup", body=b'{"action": "setup"}', token=True,
                                   headers={"Content-Type": "text/plain"})
    assert status == 415, body


def test_files_are_served_only_from_what_the_app_shows_never_from_its_folder(app, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    for target in [ROOT / "README.md", ROOT / "pyproject.toml", secret, Path("/etc/hostname"),
                   "http://evil.example/x.png"]:
        for prefix in ("/file=", "/file/"):
            status, headers, _ = app.request("GET", f"{prefix}{target}", token=True)
            assert status == 403, (prefix, target, status)
            assert "location" not in headers


def test_gradios_file_cache_of_the_users_photos_is_private(app, home):
    cache = home / "data" / "gradio-cache"
    assert cache.is_dir() and stat.S_IMODE(cache.stat().st_mode) == 0o700


def test_a_client_chosen_path_cannot_make_the_caption_writer_write(app, tmp_path):
    """The exploit: POST /run/predict with the caption writer's fn_index, a root and an image of the caller's
    choosing. The handler acts only on the dataset and image this server validated and listed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    fn, n_inputs = app.event("cloudlora_ds_save_caption")
    image = str(outside / "a.png")
    data = [str(outside)] + [image] * (n_inputs - 2) + ["written by a stranger"]  # root, image(s), caption
    status, _h, body = app.request("POST", "/run/predict", token=True, headers={"Origin": f"http://{app.own}"},
                                   body={"fn_index": fn, "data": data, "session_hash": "attacker"})
    assert not (outside / "a.txt").exists(), body
    assert not (outside / "a.caption").exists()
    assert status == 200 and b"Click an image in the gallery first" in body


def test_a_pulled_lora_goes_only_to_the_configured_lora_folder(app, tmp_path):
    status, _h, body = app.request("POST", "/cloudlora/v1/jobs/cl-x-0123456789/pull", token=True,
                                   body={"lora_dir": str(tmp_path / "anywhere")})
    assert status == 400 and b"is not one of the Lora folders" in body
    assert not (tmp_path / "anywhere").exists()


def test_the_environment_token_is_used_when_given(monkeypatch):
    from cloudlora.ui import access

    monkeypatch.setenv(access.TOKEN_ENV, "fixed-for-scripts")
    assert access.Access().url("http://127.0.0.1:7860/") == "http://127.0.0.1:7860/?token=fixed-for-scripts"
    monkeypatch.delenv(access.TOKEN_ENV)
    a, b = access.Access(), access.Access()
    assert a.token != b.token and len(a.token) >= 40  # 32 random bytes
