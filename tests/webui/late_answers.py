"""Holds back the answers of chosen gradio events in the browser, to make "an answer arrives late" happen on demand.

gradio 3.41 runs each queued event over a websocket of its own, whose first message from the page names the event
(fn_index). Messages from the server for a held event are kept until release(); the page waits for them as it would
for a slow server. Route it before the page loads: hold(page, pick) then page.goto(...).
"""
from __future__ import annotations

import json
import re


def event_indexes(page, *, writes: str, on: str | None = None, trigger: str | None = None) -> set[int]:
    """fn_index of each event listener that writes the component `writes` (elem_id), fired by the component `on`
    (elem_id) and/or of the kind `trigger` ("load", "change", ...). The page must have loaded once."""
    config = page.evaluate("window.gradio_config")
    ids = {c.get("props", {}).get("elem_id"): c["id"] for c in config["components"]}
    return {i for i, dep in enumerate(config["dependencies"])
            if ids[writes] in dep["outputs"] and (on is None or ids[on] in dep["targets"])
            and (trigger is None or dep.get("trigger") == trigger)}


class Held:
    """The held answers of the events in `indexes`; release() delivers them, and later ones pass at once."""

    def __init__(self, page, indexes: set[int]):
        self.indexes, self.holding, self.sockets = set(indexes), True, []
        page.route_web_socket(re.compile(r".*/queue/join.*"), self._route)

    def _route(self, ws) -> None:
        server = ws.connect_to_server()
        event: dict = {"ws": ws, "held": []}

        def from_page(message):
            if isinstance(message, str) and '"fn_index"' in message and "fn" not in event:
                event["fn"] = json.loads(message).get("fn_index")
            server.send(message)

        def from_server(message):
            if self.holding and event.get("fn") in self.indexes:
                event["held"].append(message)
            else:
                ws.send(message)
        ws.on_message(from_page)
        server.on_message(from_server)
        self.sockets.append(event)

    def held(self) -> int:
        return sum(len(e["held"]) for e in self.sockets)

    def release(self) -> None:
        self.holding = False
        for event in self.sockets:
            for message in event["held"]:
                event["ws"].send(message)
            event["held"].clear()
