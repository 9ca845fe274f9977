"""The ObjectStore interface every store implements, and the small types it returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Protocol

from ..errors import UserError

# progress(bytes_done_total, bytes_total)
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    metadata: Mapping[str, str] = field(default_factory=dict)


class ObjectStore(Protocol):
    """Keys are '/'-separated, relative, never starting with '/' nor containing '..'."""

    kind: str  # "s3" | "local"

    def uri(self, key: str = "") -> str:
        """s3://bucket/key, or the absolute local path, for job inputs and outputs."""

    def put_file(self, key: str, path: Path, *, metadata: Mapping[str, str] | None = None,
                 progress: ProgressFn | None = None) -> None: ...

    def put_bytes(self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None,
                  if_absent: bool = False) -> None:
        """Writes the object atomically (a reader sees the old bytes or the new ones). With if_absent, only when
        nothing is at `key` yet, else AlreadyExists: of two racing writers exactly one succeeds (a name claim)."""

    def get_bytes(self, key: str) -> bytes: ...

    def download(self, key: str, dest: Path, *, progress: ProgressFn | None = None) -> None:
        """The object at `key` into the file `dest`. S3: a key naming a folder of objects (a diffusers model,
        models/<name>/<folder>) brings each into dest/<relative path>; the local store links folders instead."""

    def head(self, key: str) -> ObjectInfo | None: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> int: ...


class AlreadyExists(FileExistsError):
    """put_bytes(..., if_absent=True) found an object at the key already."""


class InvalidKey(UserError, ValueError):
    """A key that would leave its prefix ('..', an absolute path): a user-fixable 400, never a traceback."""


def check_key(key: str) -> str:
    """The key, or InvalidKey. Beyond '..' and absolute keys, what LocalStore on Windows would read as path syntax:
    '\\' (a separator: 'a\\..\\..\\x' leaves the root), ':' (a drive or an NTFS stream), device names and trailing
    dots or spaces (stripped, so two keys would be one file)."""
    from ..portable_names import is_reserved

    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", ".."):
        raise InvalidKey(f"{key!r} is not a valid store key (no '..', '.', empty or absolute parts).",
                         "Use the name shown by the listing (`cloudlora jobs`, `model list`, `dataset list`).")
    if "\\" in key or ":" in key or any(p and (p[-1] in ". " or is_reserved(p)) for p in parts):
        raise InvalidKey(f"{key!r} is not a valid store key (no '\\', ':', Windows device names such as CON or NUL, "
                         "or parts ending with a dot or a space).",
                         "Use the name shown by the listing (`cloudlora jobs`, `model list`, `dataset list`).")
    return key
