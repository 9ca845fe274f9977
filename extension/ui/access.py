"""Only the user reaches the standalone app (`cloudlora ui`): a secret token, this machine's loopback address only,
no cross-origin access, and files only from gradio's own private cache.

Jupyter-style: the URL the app prints carries `?token=...`. The first visit trades it for an HttpOnly, SameSite=Lax
cookie and is redirected to the same page without it; every later request (the page, gradio's events and its
websocket, files, the REST routes) needs that cookie, the `X-CloudLoRA-Token` header or `?token=`. Before the
token, api/guard.py refuses foreign Host names (DNS rebinding) and requests from other web pages; gradio's own
"allow every origin" CORS layer is removed. `CLOUDLORA_UI_TOKEN` fixes the token (scripts, tests).
Inside A1111/Forge none of this applies: the WebUI owns its server, and only our REST routes are ours to guard.
"""
from __future__ import annotations

import json
import os
import secrets
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode

from ..api import PREFIX, guard

TOKEN_ENV = "CLOUDLORA_UI_TOKEN"
HEADER = "x-cloudlora-token"  # lower-case, as ASGI gives header names
HEADER_NAME = "X-CloudLoRA-Token"
POLICY = guard.Policy(ip_hosts=False)  # bound to 127.0.0.1: loopback names and addresses only
# gradio's launch() pings this route of its own server without any credential (and ignores the answer): it is
# refused like every other route, and start_gradio() sends the ping again with the token.
STARTUP_PATH = "/startup-events"


class Access:
    """The app's secret token and where it may be presented."""

    def __init__(self, token: str | None = None):
        self.token = token or os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(32)

    def url(self, base_url: str) -> str:
        """The address to print and open: the app's URL with the token."""
        return f"{base_url.rstrip('/')}/?token={self.token}"

    def matches(self, value: str | None) -> bool:
        return bool(value) and secrets.compare_digest(value.encode(), self.token.encode())


def prepare_environment() -> Path:
    """Points gradio's file cache (uploads, gallery thumbnails of the user's photos) at a private folder.

    Call before any component is built. A GRADIO_TEMP_DIR the user set is kept (and made private if it is ours)."""
    from .. import private_files
    from ..settings import data_dir

    folder = Path(os.environ.setdefault("GRADIO_TEMP_DIR", str(data_dir() / "gradio-cache")))
    return private_files.ensure_dir(folder)


def launch_kwargs(access: Access) -> dict:
    """Arguments for demo.launch() that put the access check into the app from its first request on."""
    from starlette.middleware import Middleware

    return {"app_kwargs": {"middleware": [Middleware(AccessMiddleware, access=access)]}}


def protect(app) -> None:
    """After launch: drops gradio's CORS layer, which answers every origin with Access-Control-Allow-Origin: *
    (3.x) or lets other local pages in (4.x). A1111 does the same to its own app."""
    app.user_middleware = [m for m in app.user_middleware if "CORS" not in getattr(m.cls, "__name__", "")]
    app.middleware_stack = app.build_middleware_stack()


def _file_roots(app) -> list[str]:
    roots = [os.environ.get("GRADIO_TEMP_DIR", ""), getattr(app, "uploaded_file_dir", "")]
    return [os.path.realpath(r) for r in roots if r]


def file_allowed(app, requested: str) -> bool:
    """A /file= path is served only from gradio's own cache (what the app shows and what the user uploaded): never
    from the folder the app was started in, never a redirect to a URL."""
    path = unquote(requested)
    if "://" in path or not os.path.isabs(path):
        return False
    from ..assets.dataset_check import contains

    real = os.path.realpath(path)
    return any(contains(r, real) for r in _file_roots(app))


class AccessMiddleware:
    """ASGI middleware applying the rules in the module docstring to HTTP and websocket requests."""

    def __init__(self, app, access: Access):
        self.app = app
        self.access = access

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        method = scope.get("method", "GET")
        server = scope.get("server") or ("", None)
        found = guard.refusal(POLICY, method, headers, scope.get("scheme", "http"), require_json=False,
                              own_port=server[1])
        if found is None:
            found, redirect = self._credential(scope, headers, path, method)
            if redirect is not None:
                return await redirect(send)
        if found is None and (path.startswith("/file=") or path.startswith("/file/")):
            requested = path[len("/file="):] if path.startswith("/file=") else path[len("/file/"):]
            if not file_allowed(scope.get("app"), requested):
                found = guard.Refusal(403, "This app serves only the files it shows.", "")
        if found is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        await _respond(send, found, rest=path.startswith(PREFIX))

    def _credential(self, scope, headers, path, method):
        """(refusal or None, redirect or None): the token in the query, a cookie, the header or gradio's own."""
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = dict(query).get("token")
        name = cookie_name(scope)
        if self.access.matches(given):
            if scope["type"] == "http" and method == "GET" and not path.startswith(PREFIX):
                rest = urlencode([(k, v) for k, v in query if k != "token"])
                return None, _redirect(path + (f"?{rest}" if rest else ""), name, self.access.token)
            return None, None
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is just no credential
            pass
        if name in cookies and self.access.matches(cookies[name].value):
            return None, None
        if self.access.matches(headers.get(HEADER)):
            return None, None
        queue_token = getattr(scope.get("app"), "queue_token", None)  # gradio 3's queue calling /api/predict
        if queue_token and _bearer(headers.get("authorization"), queue_token):
            return None, None
        return guard.Refusal(401, "This is a private Cloud LoRA Trainer app: open the address `cloudlora ui` printed "
                                  "(it ends with ?token=...).",
                             f"Scripts send the token in the {HEADER_NAME} header (CLOUDLORA_UI_TOKEN sets it)."), None


def start_gradio(local_url: str, access: Access, timeout: float = 30) -> bool:
    """Runs gradio's startup events (its queue) with the token: launch()'s own ping carried none and was refused.
    True when gradio started them now, False when they ran already."""
    import urllib.request

    url = local_url.split("?", 1)[0].rstrip("/") + STARTUP_PATH
    request = urllib.request.Request(url, headers={HEADER_NAME: access.token})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never goes through a proxy
    with opener.open(request, timeout=timeout) as r:
        return json.loads(r.read() or b"false") is True


def cookie_name(scope) -> str:
    """Cookies are shared by every port of 127.0.0.1, so each app's cookie is named after its port."""
    server = scope.get("server") or ("", 0)
    return f"cloudlora-token-{server[1]}"


def _bearer(header: str | None, token: str) -> bool:
    return bool(header) and secrets.compare_digest(header.encode(), f"Bearer {token}".encode())


def _redirect(location: str, cookie: str, token: str):
    async def send_it(send):
        await send({"type": "http.response.start", "status": 303, "headers": [
            (b"location", location.encode("latin-1")),
            (b"set-cookie", f"{cookie}={token}; Path=/; HttpOnly; SameSite=Lax".encode("latin-1")),
            (b"cache-control", b"no-store"),
            (b"content-length", b"0"),
        ]})
        await send({"type": "http.response.body", "body": b""})

    return send_it


async def _respond(send, refusal: guard.Refusal, rest: bool) -> None:
    if rest:
        body, ctype = json.dumps({"detail": refusal.detail()}).encode(), b"application/json"
    else:
        text = refusal.message + (f"\n{refusal.fix}" if refusal.fix else "")
        body, ctype = text.encode(), b"text/plain; charset=utf-8"
    await send({"type": "http.response.start", "status": refusal.status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
