"""A web page cannot slip past the Host, Origin and Sec-Fetch rules with a crafted header, and the standalone app
answers nothing of gradio's without the token (issue 20, "Web surface")."""
from __future__ import annotations

import pytest

from cloudlora.api import guard

LOOPBACK_ONLY = guard.Policy(ip_hosts=False)


@pytest.mark.parametrize("host", ["localhost:7860@evil.com", "", "   ", "127.0.0.1:7860 evil.com",
                                  "127.0.0.1:7860,evil.com", "user@127.0.0.1:7860", "127.0.0.1:７８６０",
                                  "127.0.0.1:99999", "[::1", "[zz::1]:7860", "localhost:7860/x"])
def test_a_host_header_that_is_not_exactly_one_host_is_refused(host):
    found = guard.refusal(LOOPBACK_ONLY, "GET", {"host": host})
    assert found is not None and found.status == 403, host
    assert guard.refusal(guard.Policy(), "GET", {"host": host}) is not None, host


def test_the_standalone_app_answers_only_to_its_own_port():
    assert guard.refusal(LOOPBACK_ONLY, "GET", {"host": "127.0.0.1:7860"}, own_port=7860) is None
    assert guard.refusal(LOOPBACK_ONLY, "GET", {"host": "[::1]:7860"}, own_port=7860) is None
    found = guard.refusal(LOOPBACK_ONLY, "GET", {"host": "127.0.0.1:7861"}, own_port=7860)
    assert found.status == 403 and "port 7860" in found.message
    assert guard.refusal(LOOPBACK_ONLY, "GET", {"host": "localhost"}, own_port=7860).status == 403  # port 80


def test_the_origins_scheme_is_compared():
    host = {"host": "127.0.0.1:7860"}
    assert guard.refusal(LOOPBACK_ONLY, "GET", {**host, "origin": "http://127.0.0.1:7860"}) is None
    found = guard.refusal(LOOPBACK_ONLY, "GET", {**host, "origin": "https://127.0.0.1:7860"})
    assert found is not None and "another web page" in found.message
    # a websocket's page is http
    assert guard.refusal(LOOPBACK_ONLY, "GET", {**host, "origin": "http://127.0.0.1:7860"}, "ws") is None
    assert guard.refusal(LOOPBACK_ONLY, "GET", {**host, "origin": "https://127.0.0.1:7860"}, "ws") is not None


@pytest.mark.parametrize("site", ["CROSS-SITE", "Cross-Site", "SAME-SITE", " cross-site "])
def test_sec_fetch_site_is_compared_whatever_its_case(site):
    found = guard.refusal(LOOPBACK_ONLY, "GET", {"host": "127.0.0.1:7860", "sec-fetch-site": site})
    assert found is not None and found.status == 403, site
    assert guard.refusal(LOOPBACK_ONLY, "GET", {"host": "127.0.0.1:7860", "sec-fetch-site": "Same-Origin"}) is None


def test_the_rest_routes_refuse_the_crafted_hosts_too(api_client):
    from fastapi import FastAPI

    from cloudlora import api

    app = FastAPI()
    api.mount(app, None)
    client = api_client(app)
    assert client.get(f"{api.PREFIX}/version").status_code == 200
    for host in ("localhost:7860@evil.com", "127.0.0.1:7860 evil.com"):
        assert client.get(f"{api.PREFIX}/version", headers={"Host": host}).status_code == 403, host
    r = client.get(f"{api.PREFIX}/version", headers={"Origin": "https://127.0.0.1", "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 403
    assert client.get(f"{api.PREFIX}/version", headers={"Sec-Fetch-Site": "CROSS-SITE"}).status_code == 403


# --- the standalone app: every gradio route behind the token --------------------------------------------------

async def _call(middleware, scope):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await middleware(scope, receive, send)
    return sent


def _scope(path, method="GET", headers=None, port=7860):
    raw = [(k.lower().encode(), v.encode()) for k, v in {"host": f"127.0.0.1:{port}", **(headers or {})}.items()]
    return {"type": "http", "path": path, "method": method, "headers": raw, "query_string": b"",
            "server": ("127.0.0.1", port), "scheme": "http", "app": None}


@pytest.mark.parametrize("method, path", [("GET", "/startup-events"), ("POST", "/reset"), ("POST", "/reset/"),
                                          ("GET", "/config"), ("POST", "/queue/join"), ("GET", "/info")])
def test_gradio_routes_answer_401_without_the_token(method, path):
    import asyncio

    from cloudlora.ui import access

    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"true"})

    gate = access.Access("s3cret")
    middleware = access.AccessMiddleware(app, gate)
    sent = asyncio.run(_call(middleware, _scope(path, method, {"content-type": "application/json"})))
    assert sent[0]["status"] == 401 and reached == []
    sent = asyncio.run(_call(middleware, _scope(path, method, {"content-type": "application/json",
                                                                access.HEADER_NAME: "s3cret"})))
    assert sent[0]["status"] == 200 and reached == [path]
