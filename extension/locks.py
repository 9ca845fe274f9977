"""Machine-wide named locks on data_dir()/locks/<name>.lock: the tab, the CLI and REST workers of this machine never
run the same create, pull or upload at once; the local runner's one-GPU-job lock is one too.

A lock is held by an open file, so a killed holder releases it at once (the system closes its files); there is never
a stale lock to clear. Threads of one process exclude each other too (each hold opens the file anew). Where fcntl
exists (Linux, macOS) it is flock on a descriptor, which the runner hands to the trainer so that the trainer holds
the GPU lock as long as it lives. Elsewhere (Windows) it is filelock, i.e. msvcrt.locking; a Windows lock belongs to
the process that took it, so there the trainer is tied to its runner by a Job object instead (processes.py).
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from . import private_files
from .errors import UserError
from .settings import data_dir

# A lock another holder has: flock says EWOULDBLOCK/EAGAIN, and some file systems EACCES.
_BUSY = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES}


def lock_path(name: str) -> Path:
    folder = private_files.ensure_dir(data_dir() / "locks")
    return folder / f"{re.sub(r'[^A-Za-z0-9._-]', '_', name)[:200]}.lock"


def _fcntl():
    """fcntl where the system has it (imported here, not at the top: Windows has none)."""
    try:
        import fcntl
    except ImportError:
        return None
    return fcntl if hasattr(fcntl, "flock") else None


def _unsupported(path: Path, err: BaseException) -> UserError:
    # flock on some SMB/NFS mounts raises ENOTSUP/ENOLCK rather than blocking: say which folder, not a traceback.
    return UserError(f"Cannot lock {path}: {err}. The folder is on a volume that does not support file locks "
                     "(a network share?).",
                     "Point CLOUDLORA_DATA_DIR (and CLOUDLORA_STORE) at a folder on a local disk.")


class Lock:
    """One holder of the lock file `path`. try_acquire() makes one attempt; release() lets go. `fd` is the
    descriptor that holds it where a child can inherit the lock (flock), else None."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.fd: int | None = None
        self._filelock = None

    def try_acquire(self) -> bool:
        """True when this holder now has the lock, False when another has it; UserError when the volume cannot lock."""
        fcntl = _fcntl()
        if fcntl is None:
            return self._try_filelock()
        fd = private_files.open_fd(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in _BUSY:
                return False
            raise _unsupported(self.path, err) from err
        self.fd = fd
        return True

    def _try_filelock(self) -> bool:
        import filelock

        if self._filelock is None:
            # Not created beforehand: where filelock falls back to a soft lock (no flock), an existing file means held.
            try:
                self._filelock = filelock.FileLock(str(self.path), mode=private_files.FILE_MODE)
            except TypeError:  # filelock before 3.10 has no mode: tightened below once held
                self._filelock = filelock.FileLock(str(self.path))
        try:
            self._filelock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        except (OSError, NotImplementedError) as err:
            raise _unsupported(self.path, err) from err
        with contextlib.suppress(OSError):
            os.chmod(self.path, private_files.FILE_MODE)
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None
        if self._filelock is not None:
            with contextlib.suppress(OSError):
                self._filelock.release()


@contextlib.contextmanager
def hold(name: str, *, timeout: float | None = 120.0, cancel: threading.Event | None = None,
         on_wait: Callable[[], None] | None = None, poll: float = 0.05) -> Iterator[None]:
    """Holds the lock `name` for the block. Waits up to `timeout` seconds (None: until it is free or `cancel` is
    set); on_wait() is called once when the lock is busy. TimeoutError when the wait runs out."""
    path = lock_path(name)
    lock = Lock(path)
    deadline = None if timeout is None else time.monotonic() + timeout
    waited = False
    try:
        while not lock.try_acquire():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {path}") from None
            if cancel is not None and cancel.is_set():
                from .assets.progress import Cancelled

                raise Cancelled("cancelled while waiting for another upload of the same file") from None
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            time.sleep(poll)
        yield
    finally:
        lock.release()
