"""Background work of the WebUI side: named daemon threads, and stoppers run when the WebUI unloads the scripts.

"Reload UI" re-runs scripts/ but keeps this package loaded, so anything long-running registers a stopper here and
the glue calls stop_all() from on_script_unloaded (and the standalone app at exit).
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)

_lock = threading.Lock()
_stoppers: list[Callable[[], None]] = []
_threads: list[threading.Thread] = []


def start(name: str, fn: Callable, *args) -> threading.Thread:
    """Runs fn(*args) in a daemon thread named `cloudlora-<name>`; an exception is logged, never lost silently."""

    def run():
        try:
            fn(*args)
        except Exception:  # the thread has no caller to raise to
            log.exception("cloudlora background task %r failed", name)

    thread = threading.Thread(target=run, name=f"cloudlora-{name}", daemon=True)
    with _lock:
        _threads[:] = [t for t in _threads if t.is_alive()]
        _threads.append(thread)
    thread.start()
    return thread


def register_stopper(fn: Callable[[], None]) -> None:
    """fn() is called once by the next stop_all() (e.g. sets an Event that a polling loop checks)."""
    with _lock:
        if fn not in _stoppers:
            _stoppers.append(fn)


def running() -> list[str]:
    with _lock:
        return [t.name for t in _threads if t.is_alive()]


def stop_all(timeout: float = 5.0) -> None:
    """Calls every registered stopper (each once), then waits up to `timeout` seconds in total for the threads."""
    import time

    with _lock:
        stoppers, _stoppers[:] = list(_stoppers), []
        threads = list(_threads)
    for fn in stoppers:
        try:
            fn()
        except Exception:
            log.exception("cloudlora stopper %r failed", fn)
    deadline = time.monotonic() + timeout
    for thread in threads:
        if thread is threading.current_thread():
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
    with _lock:
        _threads[:] = [t for t in _threads if t.is_alive()]
