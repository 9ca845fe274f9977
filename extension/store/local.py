"""The local store: a folder on disk with the same key layout as the bucket. Metadata sits in `<file>.meta.json`.

Every write is atomic (cloudlora.atomic: a temp file of its own, then a rename), so any number of threads and
processes may write and read one key at once: a reader gets the old bytes or the new ones, never a torn file.
put_bytes(if_absent=True) is the local half of a name claim: of two racing writers exactly one succeeds.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterator, Mapping

from .. import atomic, private_files
from .base import AlreadyExists, ObjectInfo, ProgressFn, check_key

META = ".meta.json"
CHUNK = 8 << 20


class LocalStore:
    kind = "local"

    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser().resolve()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def uri(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root)

    def _write_meta(self, path: Path, metadata: Mapping[str, str] | None) -> None:
        meta = path.with_name(path.name + META)
        if metadata:
            atomic.write_text(meta, json.dumps(dict(metadata)))
        else:
            try:
                meta.unlink()
            except FileNotFoundError:
                pass

    def put_file(self, key: str, path: Path, *, metadata=None, progress: ProgressFn | None = None) -> None:
        """A chunked copy that resumes an interrupted one; the file's sha256 lands in the metadata."""
        from ..assets.transfer import upload_file

        cb = (lambda p: progress(p.done, p.total)) if progress else None
        upload_file(self, check_key(key), Path(path), metadata=metadata, progress=cb, skip_if_same=False)

    def put_bytes(self, key: str, data: bytes, *, metadata=None, if_absent: bool = False) -> None:
        dest = self._path(key)
        private_files.ensure_dir(dest.parent)
        if if_absent:
            if not atomic.create_exclusive(dest, data):
                raise AlreadyExists(f"already in the store: {key}")
        else:
            atomic.write_bytes(dest, data)
        self._write_meta(dest, metadata)

    def get_bytes(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as f:  # one open: a rename meanwhile cannot tear what we read
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise FileNotFoundError(f"not in the store: {key}") from None

    def download(self, key: str, dest: Path, *, progress: ProgressFn | None = None) -> None:
        src = self._path(key)
        if not src.is_file():
            raise FileNotFoundError(f"not in the store: {key}")
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        if progress:
            size = src.stat().st_size
            progress(size, size)

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        if not path.is_file():
            return None
        meta = path.with_name(path.name + META)
        try:
            metadata = json.loads(meta.read_text(encoding="utf-8"))
        except FileNotFoundError:
            metadata = {}
        except ValueError:  # damaged metadata: as if there were none (an upload then verifies and rewrites it)
            metadata = {}
        try:
            size = path.stat().st_size
        except FileNotFoundError:  # deleted meanwhile
            return None
        return ObjectInfo(key, size, metadata if isinstance(metadata, dict) else {})

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.exists():
            return
        for dirpath, _dirs, files in os.walk(self.root):
            for name in sorted(files):
                if name.endswith(META) or name.endswith(".partial") or atomic.is_temp_name(name):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    info = self.head(key)
                    if info is not None:  # not deleted between the walk and the look
                        yield info

    def delete(self, key: str) -> None:
        path = self._path(key)
        for p in (path, path.with_name(path.name + META)):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def delete_prefix(self, prefix: str) -> int:
        keys = [o.key for o in self.list(prefix)]
        for k in keys:
            self.delete(k)
        # What list() never shows goes too: an interrupted upload's <file>.partial, a killed writer's temp file.
        folder = self.root / prefix.rstrip("/") if prefix.endswith("/") and prefix.strip("/") else None
        if folder is not None and check_key(prefix.rstrip("/")) and folder.is_dir():
            for dirpath, _dirs, files in os.walk(folder):
                for name in files:
                    if name.endswith(".partial") or atomic.is_temp_name(name):
                        try:
                            os.unlink(os.path.join(dirpath, name))
                        except OSError:
                            pass
        return len(keys)
