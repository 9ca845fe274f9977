"""The image build bundle: a zip of exactly what the trainer Dockerfile's build context needs, and its content hash.

The files are the Dockerfile plus every source its COPY/ADD lines name (relative to the repository root, which is the
build context, see the Dockerfile's header). The zip is deterministic (sorted names, fixed timestamps).

The image tag is a hash of the files that make the trainer: everything in the bundle except the WebUI side
(extension/, which setup.py needs to install the package but the trainer never imports), the README and the AWS
stack files. So setup rebuilds the image only when the trainer (cloud_backend/, its requirements, the Dockerfile,
the packaging) changed, not on every UI or documentation edit.
"""
from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import re
import shlex
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

DOCKERFILE = "cloud_backend/container/Dockerfile"
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".git", "node_modules"}
_SKIP_FILES = ("*.pyc", "*.pyo", ".DS_Store")
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)
TAG_LENGTH = 16
# In the bundle but not in the tag's hash (see the module docstring).
_NOT_HASHED = ("extension/", "README.md", "cloud_backend/infra/")
# What `COPY . <dest>` stands for: the installable project, without the checkout's venvs and caches.
_DOT_CONTEXT = ["cloud_backend", "extension", "pyproject.toml", "setup.py", "README.md"]


@dataclass(frozen=True)
class Bundle:
    data: bytes  # the zip
    files: list[str]  # relative paths, sorted
    content_hash: str  # sha256 over (path, bytes) of the trainer's files (not _NOT_HASHED)

    @property
    def tag(self) -> str:
        return self.content_hash[:TAG_LENGTH]


def repo_root() -> Path:
    """The build context: the folder holding cloud_backend/ (the extension's folder, or the checkout)."""
    import cloudlora_backend

    return Path(cloudlora_backend.__file__).resolve().parent.parent


def _instructions(text: str) -> list[str]:
    """Dockerfile lines joined over backslash continuations, comments dropped."""
    out, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    if current:
        out.append(current)
    return out


def copy_sources(dockerfile_text: str) -> list[str]:
    """Sources of COPY/ADD instructions taken from the build context (not --from=stage, not URLs)."""
    sources: list[str] = []
    for ins in _instructions(dockerfile_text):
        m = re.match(r"(?i)^(COPY|ADD)\s+(.*)$", ins)
        if not m:
            continue
        rest = m.group(2).strip()
        if rest.startswith("["):
            args = json.loads(rest)
        else:
            args = shlex.split(rest)
        flags = [a for a in args if a.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        paths = [a for a in args if not a.startswith("--")]
        for src in paths[:-1]:  # the last one is the destination
            if "://" not in src:
                sources.append("." if src in (".", "./") else src.removeprefix("./").rstrip("/"))
    return sources


def _walk(root: Path, rel: str) -> list[str]:
    target = root / rel
    if target.is_file():
        return [rel]
    files = []
    for path in sorted(target.rglob("*")):
        parts = path.relative_to(root).parts
        if any(p in _SKIP_DIRS for p in parts) or not path.is_file():
            continue
        if any(fnmatch.fnmatch(path.name, pat) for pat in _SKIP_FILES):
            continue
        files.append(path.relative_to(root).as_posix())
    return files


def context_files(root: Path | None = None) -> list[str]:
    root = root or repo_root()
    dockerfile = root / DOCKERFILE
    if not dockerfile.is_file():
        raise UserError(f"The trainer Dockerfile {dockerfile} is missing, so the image cannot be built.",
                        "Reinstall the extension (its cloud_backend/ folder is incomplete).")
    files = {DOCKERFILE}
    for src in copy_sources(dockerfile.read_text(encoding="utf-8")):
        matches = sorted(p.relative_to(root).as_posix() for p in root.glob(src)) if any(c in src for c in "*?[") \
            else ([src] if (root / src).exists() else [])
        if src == ".":
            # Never zip the whole checkout (venvs, caches, models): the package sources are what an install needs.
            matches = [p for p in _DOT_CONTEXT if (root / p).exists()]
        if not matches:
            raise UserError(f"The Dockerfile copies '{src}', which is not in {root}.",
                            "Reinstall the extension (its files are incomplete).")
        for match in matches:
            files.update(_walk(root, match))
    return sorted(files)


def build_bundle(root: Path | None = None) -> Bundle:
    root = root or repo_root()
    files = context_files(root)
    digest = hashlib.sha256()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel in files:
            data = (root / rel).read_bytes()
            if not rel.startswith(_NOT_HASHED):
                digest.update(rel.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
            info = zipfile.ZipInfo(rel, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return Bundle(buf.getvalue(), files, digest.hexdigest())
