"""Transfers and other long asset work in the background: a future-like Transfer that the tabs and REST routes poll.

s3transfer-style: result()/done()/exception() like a future, cancel(), and the latest Progress.
"""
from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import asdict
from typing import Callable

from .transfer import Cancelled, Progress, ProgressCallback

KEEP_FINISHED = 200  # finished transfers kept for polling


class Transfer:
    """A transfer running in a background thread: result()/done()/exception() like a future, cancel(), progress."""

    def __init__(self, name: str):
        self.id = uuid.uuid4().hex[:12]
        self.name = name
        self.cancel_event = threading.Event()
        self.future: Future = Future()
        self.progress: Progress | None = None
        self.started = time.time()

    def result(self, timeout: float | None = None):
        return self.future.result(timeout)

    def exception(self, timeout: float | None = None):
        return self.future.exception(timeout)

    def done(self) -> bool:
        return self.future.done()

    def cancel(self) -> None:
        self.cancel_event.set()

    def _on_progress(self, p: Progress) -> None:
        self.progress = p

    def status(self) -> str:
        if not self.future.done():
            return "cancelling" if self.cancel_event.is_set() else "running"
        err = self.future.exception()
        if err is None:
            return "done"
        return "cancelled" if isinstance(err, Cancelled) else "failed"

    def to_dict(self) -> dict:
        p = self.progress
        out = {"id": self.id, "name": self.name, "status": self.status(), "started": self.started,
               "progress": asdict(p) if p else None, "progress_text": p.text() if p else ""}
        if self.future.done():
            err = self.future.exception()
            if err is None:
                res = self.future.result()
                out["result"] = res.to_dict() if hasattr(res, "to_dict") else res
            else:
                out["error"] = str(err)
        return out


_transfers: dict[str, Transfer] = {}
_transfers_lock = threading.Lock()


def start(title: str, fn: Callable, /, *args, progress: ProgressCallback | None = None, **kwargs) -> Transfer:
    """Runs fn(*args, progress=..., cancel=..., **kwargs) in a background thread and returns its Transfer."""
    from .. import background

    transfer = Transfer(title)

    def report(p: Progress) -> None:
        transfer._on_progress(p)
        if progress:
            progress(p)

    def run() -> None:
        try:
            transfer.future.set_result(fn(*args, progress=report, cancel=transfer.cancel_event, **kwargs))
        except BaseException as err:  # noqa: BLE001 - handed to whoever waits on the future
            transfer.future.set_exception(err)

    with _transfers_lock:
        finished = [t for t in _transfers.values() if t.done()]
        for t in finished[:-KEEP_FINISHED]:
            _transfers.pop(t.id, None)
        _transfers[transfer.id] = transfer
    background.register_stopper(transfer.cancel)
    background.start(f"transfer-{transfer.id}", run)
    return transfer


def get(transfer_id: str) -> Transfer | None:
    with _transfers_lock:
        return _transfers.get(transfer_id)


def cancel(transfer_id: str, kept: str) -> str:
    """Cancels a running task; the words for the user (`kept`: what stays of the work done so far)."""
    task = get(transfer_id or "")
    if task is None or task.done():
        return "Nothing to cancel."
    task.cancel()
    return f"Cancelling… ({kept})"


def all_transfers() -> list[Transfer]:
    with _transfers_lock:
        return list(_transfers.values())
