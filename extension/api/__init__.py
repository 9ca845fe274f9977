"""The REST API: mounts every area's router under /cloudlora/v1, guarded by A1111's --api-auth and api/guard.py.

Each area lives in extension/api/<area>.py and exposes `router` (a fastapi.APIRouter whose paths are relative,
e.g. "/jobs"). Routes added in on_app_started do not get A1111's own --api-auth check, so it is done here, for
every route, in the same "user:pass,user2:pass2" format. Before it, guard.py refuses what another web page could
send (a foreign Host or Origin, a POST that is not JSON).
"""
from __future__ import annotations

import importlib
import logging
import secrets

from fastapi import APIRouter, Depends, FastAPI, HTTPException, status
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from .. import __version__
from . import guard

log = logging.getLogger(__name__)

PREFIX = "/cloudlora/v1"
ROUTER_MODULES = ["system", "model_fetch", "models", "datasets", "captions", "config", "jobs"]


def parse_api_auth(api_auth: str | None) -> list[tuple[str, str]]:
    """'user:pass,user2:pass2' -> [(user, pass), ...]; the password may itself contain ':'."""
    pairs = []
    for item in (api_auth or "").split(","):
        item = item.strip()
        if not item:
            continue
        user, sep, password = item.partition(":")
        if not sep:
            raise ValueError(f"--api-auth entry {user!r} has no ':' (expected user:password[,user2:password2])")
        pairs.append((user, password))
    return pairs


def auth_dependency(api_auth: str | None):
    """A FastAPI dependency that accepts any request when api_auth is empty, else only matching HTTP Basic."""
    pairs = parse_api_auth(api_auth)
    basic = HTTPBasic(auto_error=False)

    def check(credentials: HTTPBasicCredentials | None = Depends(basic)) -> None:
        if not pairs:
            return
        if credentials is not None:
            ok = False
            for user, password in pairs:  # compare against every pair so timing does not tell which user exists
                ok |= secrets.compare_digest(credentials.username.encode(), user.encode()) & secrets.compare_digest(
                    credentials.password.encode(), password.encode()
                )
            if ok:
                return
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Incorrect username or password",
            headers={"WWW-Authenticate": "Basic"},
        )

    return check


def _version_router() -> APIRouter:
    router = APIRouter()

    @router.get("/version", summary="Extension version and the host it runs in")
    def version() -> dict:
        from .. import host

        return {"name": "cloudlora", "version": __version__, "host": host.current().name}

    return router


def mount(app: FastAPI, api_auth: str | None, policy: guard.Policy | None = None) -> list[str]:
    """Adds every route under /cloudlora/v1 to `app`; returns the names of the areas mounted.

    `policy`: the names and origins accepted besides this machine's own (guard.py); None: none.
    An area whose module fails to import is logged and left out, so one broken area never takes the WebUI down.
    """
    if getattr(app.state, "cloudlora_mounted", None) is not None:  # e.g. a second on_app_started on one app
        return list(app.state.cloudlora_mounted)
    guard_ = [Depends(guard.dependency(policy or guard.Policy())), Depends(auth_dependency(api_auth))]
    app.include_router(_version_router(), prefix=PREFIX, dependencies=guard_, tags=["cloudlora"])
    mounted = []
    for name in ROUTER_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":
                continue
            log.exception("cloudlora: REST area %r not mounted", name)
            continue
        except Exception:
            log.exception("cloudlora: REST area %r not mounted", name)
            continue
        app.include_router(module.router, prefix=PREFIX, dependencies=guard_, tags=[f"cloudlora {name}"])
        mounted.append(name)
    app.openapi_schema = None  # the schema may have been built already; rebuild it with our routes
    app.state.cloudlora_mounted = mounted
    return mounted
