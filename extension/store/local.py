"""The local store: a folder on disk with the same key layout as the bucket. Metadata sits in `<file>.meta.json`."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterator, Mapping

from .. import private_files
from .base import ObjectInfo, ProgressFn, check_key

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
            private_files.write_text(meta, json.dumps(dict(metadata)))
        elif meta.exists():
            meta.unlink()

    def put_file(self, key: str, path: Path, *, metadata=None, progress: ProgressFn | None = None) -> None:
        """A chunked copy that resumes an interrupted one; the file's sha256 lands in the metadata."""
        from ..assets.transfer import upload_file

        cb = (lambda p: progress(p.done, p.total)) if progress else None
        upload_file(self, check_key(key), Path(path), metadata=metadata, progress=cb, skip_if_same=False)

    def put_bytes(self, key: str, data: bytes, *, metadata=None) -> None:
        dest = self._path(key)
        private_files.ensure_dir(dest.parent)
        tmp = dest.with_name(dest.name + ".partial")
        private_files.write_bytes(tmp, data)
        tmp.replace(dest)
        self._write_meta(dest, metadata)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"not in the store: {key}")
        return path.read_bytes()

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
        metadata = json.loads(meta.read_text(encoding="utf-8")) if meta.exists() else {}
        return ObjectInfo(key, path.stat().st_size, metadata)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.exists():
            return
        for dirpath, _dirs, files in os.walk(self.root):
            for name in sorted(files):
                if name.endswith(META) or name.endswith(".partial"):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield self.head(key)

    def delete(self, key: str) -> None:
        path = self._path(key)
        for p in (path, path.with_name(path.name + META)):
            if p.exists():
                p.unlink()

    def delete_prefix(self, prefix: str) -> int:
        keys = [o.key for o in self.list(prefix)]
        for k in keys:
            self.delete(k)
        return len(keys)
