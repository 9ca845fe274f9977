"""A base model in one step: fetch a checkpoint from Hugging Face or any https URL into the host's checkpoint
folder, resumable and checked, then the same family check and upload as any checkpoint (models.upload_model).

Where the source comes from and the hub's file list: hub_source.py; the resumable, checked download of one file:
resumable_download.py.
"""
from __future__ import annotations

import threading
from pathlib import Path

from .. import host
from ..errors import UserError
from . import hub_token, known_bases
from .hub_source import Source, parse_source, pick_file, repo_files, resolve_url
from .progress import ProgressCallback
from .resumable_download import Downloaded, download

__all__ = ["Source", "parse_source", "checkpoint_dir", "part_dir", "resolve_token", "fetch_model"]


# --- where models land ---

def checkpoint_dir() -> Path:
    """The host's checkpoint folder (the WebUI's models/Stable-diffusion), or <data dir>/models/Stable-diffusion."""
    from ..settings import data_dir

    where = host.current().checkpoint_dir
    return Path(where()) if where else data_dir() / "models" / "Stable-diffusion"


def part_dir(part: str) -> Path:
    """FLUX.1's parts beside the checkpoints, in the folders Forge reads them from (models/VAE, models/text_encoder),
    so they never show up as checkpoints in the WebUI's list."""
    return checkpoint_dir().parent / ("VAE" if part == "ae" else "text_encoder")


# --- the whole action: fetch, check, upload ---

def resolve_token(token: str | None) -> str:
    return (token or "").strip() or hub_token.find()


def _fetch_one(source: Source, dest_dir: Path, token: str, progress, cancel) -> Downloaded:
    if source.kind == "url":
        return download(source.url, dest_dir, source=source, progress=progress, cancel=cancel)
    remote = pick_file(source, repo_files(source, token))
    return download(resolve_url(source, remote.name), dest_dir, name=Path(remote.name).name, size=remote.size,
                    sha256=remote.sha256, token=token, source=Source("hub", source.repo, remote.name, source.revision),
                    progress=progress, cancel=cancel)


def fetch_model(store, source: str | Source, *, file: str | None = None, revision: str | None = None,
                name: str | None = None, family: str | None = None, token: str | None = None,
                dest_dir: Path | str | None = None, upload: bool = True,
                progress: ProgressCallback | None = None, cancel: threading.Event | None = None) -> dict:
    """Downloads the model (resumable, checked), checks its family, and uploads it with models.upload_model.

    Returns {"path", "downloaded_bytes", "resumed_from", "sha256_checked", "parts", ...the upload's result}."""
    from . import models

    src = source if isinstance(source, Source) else parse_source(source, file, revision)
    known = known_bases.by_key(source) if isinstance(source, str) else None
    known = known or (known_bases.for_file(src.repo, src.file) if src.kind == "hub" else None)
    tok = resolve_token(token)
    dest = Path(dest_dir).expanduser() if dest_dir else checkpoint_dir()
    got = _fetch_one(src, dest, tok, progress, cancel)
    try:
        fam = models.family_of(got.path, family or (known.family if known and got.path.name == known.file else None))
    except UserError as err:
        raise UserError(f"Downloaded {got.path}, but it is not a base model this extension trains on: {err.message}",
                        (err.fix or "") + f" Delete {got.path} if you do not need it.") from None
    parts: dict[str, Path] = {}
    if known is not None and known.parts and fam == "flux" and got.path.name == known.file:
        for part, where in known.parts.items():
            r = _fetch_one(Source("hub", where.repo, where.file), part_dir(part), tok, progress, cancel)
            parts[part] = r.path
    result = {"path": str(got.path), "downloaded_bytes": got.bytes_received, "resumed_from": got.resumed_from,
              "sha256_checked": got.checked, "already_downloaded": got.already_there, "family": fam,
              "parts": {p: str(v) for p, v in parts.items()}}
    if not upload:
        return result
    store_name = name or (known.key if known and got.path.name == known.file else None)
    up = models.upload_model(store, got.path, name=store_name, family=fam, progress=progress, cancel=cancel,
                             parts=parts or None)
    return {**up, **result}
