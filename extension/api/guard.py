"""Who may call the REST routes: this machine's scripts and the app's own page, never another web page.

A web page the user visits can send requests to 127.0.0.1 too. Three rules stop it:
- **Host**: a request must name this server by a loopback name, an IP address or a name the user configured
  (`allowed_hosts`, the WebUI's --server-name). A DNS-rebinding page reaches 127.0.0.1 under its own name.
- **Origin**: a request a browser sends from another page (`Origin`, `Sec-Fetch-Site: cross-site|same-site`) is
  refused unless that origin is one the user configured. Scripts (curl, requests) send neither.
- **JSON**: a POST must say `Content-Type: application/json`. Browsers send other POSTs cross-site without asking
  first (a "simple" request); a JSON one they must ask about, and nothing here says yes.
`refusal()` is shared by the REST routes (a FastAPI dependency) and the standalone app's middleware (extension/ui/
access.py), which adds its secret token on top.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Mapping

from fastapi import HTTPException, Request

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


@dataclass(frozen=True)
class Policy:
    """What this server accepts besides its loopback names (lower-case names, no ports)."""

    hosts: frozenset = frozenset()  # extra names (allowed_hosts, --server-name)
    host_suffixes: tuple = ()  # e.g. (".gradio.live",) while the WebUI runs with --share
    origins: frozenset = frozenset()  # extra origins, e.g. "https://my-frontend.example" (scheme://host[:port])
    ip_hosts: bool = True  # any IP address as Host (it cannot be rebound); False: loopback only (standalone)

    def with_hosts(self, names) -> "Policy":
        extra = {n.strip().lower().strip("[]") for n in names if n and n.strip()}
        return Policy(self.hosts | extra, self.host_suffixes, self.origins, self.ip_hosts)


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    fix: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)

    def detail(self) -> dict:
        return {"message": self.message, "fix": self.fix}


_HOST_RE = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?\.?))(?::(?P<port>[0-9]{1,5}))?")


def parse_host(value: str, scheme: str = "http") -> tuple[str, int | None] | None:
    """A Host header (or an origin's authority) as (name, port), or None when it is not exactly one host.

    Strict on purpose: 'localhost:7860@evil.com', 'a b', two hosts, userinfo, an empty value or a port that is not
    ASCII digits are no host at all (a lenient split read the first as 'localhost'). No port: the scheme's default."""
    m = _HOST_RE.fullmatch((value or "").strip().lower())
    if not m:
        return None
    port = int(m.group("port")) if m.group("port") else DEFAULT_PORTS.get(scheme)
    if port is not None and not 0 < port < 65536:
        return None
    if m.group("v6") is not None:
        try:
            ipaddress.IPv6Address(m.group("v6"))
        except ValueError:
            return None
        return m.group("v6"), port
    return m.group("name").rstrip("."), port


def split_host(value: str, scheme: str = "http") -> tuple[str, int | None]:
    """'Example.com:7860' -> ('example.com', 7860); '[::1]:80' -> ('::1', 80); no port -> the scheme's default;
    anything that is not exactly one host -> ('', None), which no policy allows."""
    return parse_host(value, scheme) or ("", None)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def host_allowed(policy: Policy, host: str) -> bool:
    if host in LOOPBACK_NAMES or host in policy.hosts:
        return True
    if _is_ip(host):
        return policy.ip_hosts or ipaddress.ip_address(host).is_loopback
    return any(host.endswith(s) for s in policy.host_suffixes)


def _origin_parts(origin: str) -> tuple[str, str, int | None] | None:
    m = re.fullmatch(r"(https?)://([^/?#]+)/?", origin.strip().lower())
    if not m:
        return None
    parsed = parse_host(m.group(2), m.group(1))
    return None if parsed is None else (m.group(1), *parsed)


def _http_scheme(scheme: str) -> str:
    """A websocket's page is http(s): ws -> http, wss -> https."""
    return {"ws": "http", "wss": "https"}.get((scheme or "http").lower(), (scheme or "http").lower())


def same_origin(origin: str, host_header: str, scheme: str | None = None, proxied: bool = False) -> bool:
    """Is `origin` the page of the server this request was sent to (by its Host header and, when given, the
    request's own scheme)? `proxied`: the Host is a name the user configured for a proxy in front (--share, a LAN
    name), which may end TLS, so an https page may reach this http server through it."""
    parts = _origin_parts(origin)
    if parts is None or not host_header:  # "null" (a sandboxed frame, a file:// page) is never the same origin
        return False
    if scheme is not None and parts[0] != _http_scheme(scheme) and not (proxied and parts[0] == "https"):
        return False  # https://127.0.0.1:PORT is another origin than http://127.0.0.1:PORT
    return (parts[1], parts[2]) == split_host(host_header, parts[0])


def refusal(policy: Policy, method: str, headers: Mapping[str, str], scheme: str = "http", *,
            require_json: bool = True, own_port: int | None = None) -> Refusal | None:
    """Why this request must be refused, or None. `headers`: lower-case names. require_json=False leaves out the
    JSON rule (gradio's own routes take forms and uploads; there the token cookie, SameSite=Lax, does that job).
    `own_port`: the port this server listens on, which the Host must name (the standalone app; inside the WebUI a
    proxy or --share may front another port)."""
    host_header = headers.get("host", "")
    parsed = parse_host(host_header, _http_scheme(scheme))
    host = parsed[0] if parsed else host_header.strip().lower()
    if parsed is None or not host_allowed(policy, host):
        return Refusal(403, f"This server does not answer to the name '{host}' (only this machine's own addresses).",
                       "Open it as http://127.0.0.1:PORT. A name of your own (a LAN name, a proxy) goes into "
                       "CLOUDLORA_ALLOWED_HOSTS (comma-separated) or the allowed_hosts setting.")
    if own_port is not None and parsed[1] != own_port:
        return Refusal(403, f"This server listens on port {own_port}, not {parsed[1]} (the Host header).",
                       f"Open it as http://127.0.0.1:{own_port}.")
    origin = headers.get("origin")
    # Browsers send these values in lower case; a client that does not is compared the same way.
    site = headers.get("sec-fetch-site", "").strip().lower()
    trusted = origin is not None and origin.strip().lower().rstrip("/") in policy.origins
    proxied = not _is_ip(host) and host not in LOOPBACK_NAMES
    if origin is not None and not trusted and not same_origin(origin, host_header, scheme, proxied):
        return Refusal(403, f"Requests from another web page ({origin}) are refused.",
                       "Call the API from a script or from this app's own page; a front-end of your own needs its "
                       "origin in the WebUI's --cors-allow-origins.")
    if site not in ("", "same-origin", "none") and not trusted:  # cross-site, same-site, or anything unknown
        return Refusal(403, "Requests from another web page are refused.",
                       "Call the API from a script or from this app's own page.")
    if require_json and method.upper() == "POST":
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if not (ctype == "application/json" or (ctype.startswith("application/") and ctype.endswith("+json"))):
            return Refusal(415, f"A POST here must be JSON (Content-Type: application/json), not '{ctype or 'none'}'.",
                           "Send the body as JSON, e.g. curl -H 'Content-Type: application/json' -d '{}' URL. "
                           "(A web page cannot send JSON to another site without asking it first.)")
    return None


def dependency(policy: Policy):
    """A FastAPI dependency that refuses requests the policy refuses (403 / 415 with the message and the fix)."""

    def check(request: Request) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        found = refusal(policy, request.method, headers, request.url.scheme)
        if found is not None:
            raise HTTPException(status_code=found.status, detail=found.detail(), headers=dict(found.headers) or None)

    return check
