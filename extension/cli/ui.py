"""`cloudlora ui`: the two tabs as a standalone gradio app on 127.0.0.1 (with the REST API)."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("ui", help="serve the two tabs as a standalone app on 127.0.0.1",
                       description="Serves Cloud Asset Management and Train Management as a plain gradio app on "
                                   "127.0.0.1 only, with the REST API under /cloudlora/v1. Ctrl+C stops it.")
    p.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    p.add_argument("--api-auth", default=None, metavar="USER:PASS[,USER2:PASS2]",
                   help="require HTTP Basic credentials on the REST API, in A1111's --api-auth format "
                        "(default: no auth; the app listens on 127.0.0.1 only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..api import parse_api_auth
    from ..errors import UserError

    try:
        parse_api_auth(args.api_auth)
    except ValueError as err:
        raise UserError(str(err), "Pass --api-auth user:password (several: user:pw,user2:pw2).") from err
    from ..ui import app

    app.serve(port=args.port, api_auth=args.api_auth)
    return 0
