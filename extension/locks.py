"""Machine-wide named locks (fcntl.flock on data_dir()/locks/<name>.lock): the tab, the CLI and REST workers of this
machine never run the same create, pull or upload at once.

A lock is held by an open file, so a killed holder releases it at once (the kernel closes its files); there is never
a stale lock to clear. Threads of one process exclude each other too (each hold opens the file anew).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from . import private_files
from .settings import data_dir


def lock_path(name: str) -> Path:
    folder = private_files.ensure_dir(data_dir() / "locks")
    return folder / f"{re.sub(r'[^A-Za-z0-9._-]', '_', name)[:200]}.lock"


@contextlib.contextmanager
def hold(name: str, *, timeout: float | None = 120.0, cancel: threading.Event | None = None,
         on_wait: Callable[[], None] | None = None, poll: float = 0.05) -> Iterator[None]:
    """Holds the lock `name` for the block. Waits up to `timeout` seconds (None: until it is free or `cancel` is
    set); on_wait() is called once when the lock is busy. TimeoutError when the wait runs out."""
    path = lock_path(name)
    fd = private_files.open_fd(path, os.O_RDWR)
    deadline = None if timeout is None else time.monotonic() + timeout
    waited = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"waited {timeout:.0f} s for {path}") from None
                if cancel is not None and cancel.is_set():
                    from .assets.transfer import Cancelled

                    raise Cancelled("cancelled while waiting for another upload of the same file") from None
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                time.sleep(poll)
        yield
    finally:
        os.close(fd)  # closing releases the lock
