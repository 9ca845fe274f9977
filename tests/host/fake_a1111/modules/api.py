"""--api: a few of A1111's /sdapi/v1 routes, behind --api-auth as A1111 puts them (HTTP Basic, "u:p,u2:p2")."""
import sys
from secrets import compare_digest

from fastapi import Depends, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from modules import shared


class Api:
    def __init__(self, app):
        self.app = app
        self.credentials = dict(pair.split(":", 1) for pair in (shared.cmd_opts.api_auth or "").split(",") if pair)
        self.add_api_route("/sdapi/v1/options", self.get_options, methods=["GET"])
        self.add_api_route("/sdapi/v1/refresh-loras", self.refresh_loras, methods=["POST"])

    def add_api_route(self, path, endpoint, **kwargs):
        if shared.cmd_opts.api_auth:
            return self.app.add_api_route(path, endpoint, dependencies=[Depends(self.auth)], **kwargs)
        return self.app.add_api_route(path, endpoint, **kwargs)

    def auth(self, credentials: HTTPBasicCredentials = Depends(HTTPBasic())):
        password = self.credentials.get(credentials.username)
        if password is not None and compare_digest(credentials.password, password):
            return True
        raise HTTPException(status_code=401, detail="Incorrect username or password",
                            headers={"WWW-Authenticate": "Basic"})

    def get_options(self):
        return {key: shared.opts.data.get(key) for key in shared.opts.data_labels}

    def refresh_loras(self):
        networks = sys.modules.get("networks")
        if networks is not None:
            networks.list_available_networks()


def create_api(app):
    return Api(app)
