"""Only the newest answer of a kind changes a page.

A user can fire the same kind of event twice in quick succession (SDXL then SD 1.5 in FM Type, two models picked
one after the other). Gradio's queue runs events at once (the standalone app's 8 workers, Forge's parallel queue),
so the older event's answer can end last and would undo the newer one. Each event of a kind is numbered per page
as it starts; an answer that ends after a newer one of its kind started changes nothing.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

import gradio as gr

_STARTED: OrderedDict = OrderedDict()  # (session hash, kind) -> number of the newest event started
_LOCK = threading.Lock()
_MAX = 1000  # pages remembered; the oldest are forgotten first


def session_of(request) -> str:
    """The page's session hash ('' outside gradio: a CLI or a test calling the function directly)."""
    return str(getattr(request, "session_hash", "") or "")


def answer(kind: str, request, compute: Callable[[], list]) -> list:
    """compute()'s outputs, or an update that changes nothing when a newer event of `kind` started meanwhile."""
    key = (session_of(request), kind)
    if not key[0]:
        return compute()
    with _LOCK:
        number = _STARTED.get(key, 0) + 1
        _STARTED[key] = number
        _STARTED.move_to_end(key)
        while len(_STARTED) > _MAX:
            _STARTED.popitem(last=False)
    out = compute()
    with _LOCK:
        overtaken = _STARTED.get(key, number) != number
    return [gr.update() for _ in out] if overtaken else out
