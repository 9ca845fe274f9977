"""SHA-256 of local files, cached by path + size + mtime_ns in data_dir()/hashcache.json.

Why: a 7 GB checkpoint takes seconds to hash; dedupe and resume need its hash on every click, so a file that has not
changed (same size and modification time) is never hashed twice.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Callable

from .. import atomic, private_files
from ..settings import data_dir

CHUNK = 4 << 20
_lock = threading.Lock()


def cache_file() -> Path:
    return data_dir() / "hashcache.json"


def _load() -> dict:
    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(data: dict) -> None:
    path = cache_file()
    private_files.ensure_dir(path.parent)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    private_files.write_text(tmp, json.dumps(data, indent=0, sort_keys=True))  # it lists the user's file paths
    atomic.replace(tmp, path)


def identity(path: Path | str) -> dict:
    """What says a file is unchanged: its absolute path, size and mtime in nanoseconds."""
    path = Path(path).resolve()
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cached(path: Path | str) -> str | None:
    """The cached hash when the file is unchanged since it was hashed, else None (never hashes)."""
    ident = identity(path)
    with _lock:
        entry = _load().get(ident["path"])
    if entry and entry.get("size") == ident["size"] and entry.get("mtime_ns") == ident["mtime_ns"]:
        return entry.get("sha256")
    return None


def sha256_file(path: Path | str, progress: Callable[[int, int], None] | None = None,
                cancel: threading.Event | None = None) -> str:
    """The file's SHA-256 (hex), from the cache when the file is unchanged; progress(done, total) while hashing."""
    hit = cached(path)
    if hit:
        return hit
    ident = identity(path)
    h = hashlib.sha256()
    done = 0
    with open(ident["path"], "rb") as f:
        while chunk := f.read(CHUNK):
            if cancel is not None and cancel.is_set():
                from .progress import Cancelled

                raise Cancelled(f"hashing {path} was cancelled")
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, ident["size"])
    digest = h.hexdigest()
    if identity(path) == ident:  # only cache a hash of a file that did not change while we read it
        remember(path, digest, ident)
    return digest


def remember(path: Path | str, digest: str, ident: dict | None = None) -> None:
    ident = ident or identity(path)
    with _lock:
        data = _load()
        data[ident["path"]] = {"size": ident["size"], "mtime_ns": ident["mtime_ns"], "sha256": digest}
        _save(data)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
