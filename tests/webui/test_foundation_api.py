"""The REST mount: /cloudlora/v1 routes, A1111's --api-auth format, and the OpenAPI listing."""
from __future__ import annotations

import sys

import pytest
from fastapi import APIRouter, FastAPI

from cloudlora import __version__, api


def test_without_api_auth_the_version_answers_to_anyone(api_client):
    app = FastAPI()
    api.mount(app, None)
    r = api_client(app).get("/cloudlora/v1/version")
    assert r.status_code == 200
    assert r.json() == {"name": "cloudlora", "version": __version__, "host": "standalone"}


@pytest.mark.parametrize("auth", [None, ("alice", "wrong"), ("mallory", "s3cret"), ("alice", "s3cre")])
def test_with_api_auth_a_request_without_matching_credentials_gets_401_and_a_basic_challenge(api_client, auth):
    app = FastAPI()
    api.mount(app, "alice:s3cret,bob:pa:ss")
    r = api_client(app, auth=auth).get("/cloudlora/v1/version")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Basic"


@pytest.mark.parametrize("auth", [("alice", "s3cret"), ("bob", "pa:ss")])
def test_every_user_of_api_auth_gets_in_and_passwords_may_contain_colons(api_client, auth):
    app = FastAPI()
    api.mount(app, "alice:s3cret,bob:pa:ss")
    assert api_client(app, auth=auth).get("/cloudlora/v1/version").status_code == 200


def test_a_malformed_api_auth_is_refused_with_the_format():
    with pytest.raises(ValueError, match="user:password"):
        api.parse_api_auth("justauser")


def test_area_routers_are_mounted_under_the_prefix_guarded_and_listed_in_openapi(api_client, monkeypatch):
    router = APIRouter()

    @router.get("/things")
    def things():
        return {"things": [1, 2]}

    fake_area = type(sys)("cloudlora.api.zz_things")
    fake_area.router = router
    monkeypatch.setitem(sys.modules, "cloudlora.api.zz_things", fake_area)
    monkeypatch.setattr(api, "ROUTER_MODULES", ["zz_things", "zz_not_landed_yet"])
    app = FastAPI()
    assert api.mount(app, "u:p") == ["zz_things"]
    assert api_client(app).get("/cloudlora/v1/things").status_code == 401
    assert api_client(app, auth=("u", "p")).get("/cloudlora/v1/things").json() == {"things": [1, 2]}
    paths = app.openapi()["paths"]
    assert {"/cloudlora/v1/version", "/cloudlora/v1/things"} <= set(paths)


def test_mounting_twice_on_one_app_adds_no_duplicate_routes():
    app = FastAPI()
    api.mount(app, None)
    count = len(app.routes)
    api.mount(app, None)
    assert len(app.routes) == count


def test_the_real_area_routers_that_have_landed_all_mount(api_client):
    import importlib

    app = FastAPI()
    mounted = api.mount(app, None)
    for name in api.ROUTER_MODULES:
        try:
            importlib.import_module(f"cloudlora.api.{name}")
        except ModuleNotFoundError as err:
            assert err.name == f"cloudlora.api.{name}", f"cloudlora.api.{name} fails to import: {err}"
            continue
        assert name in mounted, f"cloudlora.api.{name} exists but was not mounted"
    assert api_client(app).get("/openapi.json").status_code == 200
