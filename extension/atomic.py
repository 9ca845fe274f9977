"""Atomic file writes: a reader sees the old file or the new one, never half of one, and two writers never share a
temp file; plus create-only-if-absent, the local half of an atomic name claim.

Each write goes to its own hidden temp file in the same folder (`.<name>.<random>.tmp`, so concurrent writers of one
file never collide), is flushed, then renamed over the target (os.replace is atomic on POSIX and Windows). Files are
private (0600) unless a mode is given, like every file of the data folder and the store (private_files.py). Stdlib
only: the detached runner uses it too.

On Windows the rename fails with PermissionError while any process has the target open (Python's open() does not
share delete access; the polling tab, Defender and the Search indexer open files briefly), so `replace` retries it
for about a second before giving up. Every tmp-then-rename of the extension goes through `replace`.
"""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from .private_files import FILE_MODE

TMP_SUFFIX = ".tmp"
REPLACE_TRIES = 10  # back-off 0.01 s doubling, capped at 0.25 s: about 1.2 s in all before the error is raised


def replace(src: Path | str, dst: Path | str) -> None:
    """os.replace, retried on PermissionError (a reader holding `dst` open on Windows); raises the last error."""
    delay = 0.01
    for attempt in range(REPLACE_TRIES):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if attempt == REPLACE_TRIES - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def is_temp_name(name: str) -> bool:
    """A temp file of a write in progress (or of a writer that was killed): never a real file."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def _temp_beside(path: Path, mode: int) -> tuple[Path, int]:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:16]}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    return tmp, fd


def _write_all(fd: int, data: bytes, fsync: bool) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    if fsync:
        os.fsync(fd)


def write_bytes(path: Path | str, data: bytes, *, mode: int = FILE_MODE, fsync: bool = False) -> None:
    """Replaces `path` with `data` atomically (the folder must exist); a new file gets `mode` (less the umask)."""
    path = Path(path)
    tmp, fd = _temp_beside(path, mode)
    try:
        try:
            _write_all(fd, data, fsync)
        finally:
            os.close(fd)
        replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def write_text(path: Path | str, text: str, *, mode: int = FILE_MODE, fsync: bool = False) -> None:
    write_bytes(path, text.encode("utf-8"), mode=mode, fsync=fsync)


def create_exclusive(path: Path | str, data: bytes, *, mode: int = FILE_MODE) -> bool:
    """Creates `path` holding `data` only if nothing is there; False when something already was.

    The content is complete before the name appears (a hard link of a finished temp file), so a reader that finds
    the file never reads it half-written, and of two racing creators exactly one gets True (like O_EXCL).
    """
    path = Path(path)
    tmp, fd = _temp_beside(path, mode)
    try:
        try:
            _write_all(fd, data, False)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: O_EXCL (a reader may then see it being written)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
            except FileExistsError:
                return False
            try:
                _write_all(fd, data, False)
            finally:
                os.close(fd)
            return True
    finally:
        _unlink_quietly(tmp)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
