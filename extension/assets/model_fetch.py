"""A base model in one step: fetch a checkpoint from Hugging Face or any https URL into the host's checkpoint
folder, resumable and checked, then the same family check and upload as any checkpoint (models.upload_model).

Where the source comes from and the hub's file list: hub_source.py; the resumable, checked download of one file:
resumable_download.py; a diffusers folder repo: diffusers_fetch.py (the download) and model_folder.py (the family
and the upload).
"""
from __future__ import annotations

import threading
from pathlib import Path

from .. import host
from ..errors import UserError
from . import diffusers_fetch, hub_token, known_bases, model_folder
from .hub_source import RemoteFile, Source, parse_source, pick_file, repo_files, resolve_url, root_checkpoints
from .progress import ProgressCallback
from .resumable_download import Downloaded, download

__all__ = ["Source", "parse_source", "checkpoint_dir", "part_dir", "folder_dir", "resolve_token", "fetch_model"]


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


def _fetch_one(source: Source, dest_dir: Path, token: str, progress, cancel,
               files: list[RemoteFile] | None = None) -> Downloaded:
    if source.kind == "url":
        return download(source.url, dest_dir, source=source, progress=progress, cancel=cancel)
    remote = pick_file(source, files if files is not None else repo_files(source, token))
    return download(resolve_url(source, remote.name), dest_dir, name=Path(remote.name).name, size=remote.size,
                    sha256=remote.sha256, token=token, source=Source("hub", source.repo, remote.name, source.revision),
                    progress=progress, cancel=cancel)


def folder_dir(repo: str) -> Path:
    """Where a diffusers folder repo lands: <models>/diffusers/<repo name>, beside the checkpoint folder (never in
    it: a WebUI would list each component's weights as a checkpoint)."""
    return checkpoint_dir().parent / "diffusers" / repo.split("/")[-1]


def _not_a_base(path: Path, err: UserError) -> UserError:
    return UserError(f"Downloaded {path}, but it is not a base model this extension trains on: {err.message}",
                     (err.fix or "") + f" Delete {path} if you do not need it.")


def _fetch_folder(store, src: Source, files: list[RemoteFile], *, name, family, tok, dest_dir, upload, progress,
                  cancel) -> dict:
    """A diffusers folder repo: its pipeline's files (diffusers_fetch), the family from its configs, the upload as
    one model (model_folder)."""
    dest = Path(dest_dir).expanduser() / src.repo.split("/")[-1] if dest_dir else folder_dir(src.repo)
    got = diffusers_fetch.fetch_folder(src, files, dest, tok, progress=progress, cancel=cancel)
    try:
        fam = model_folder.family_of_folder(got.path, family)
    except UserError as err:
        raise _not_a_base(got.path, err) from None
    result = {"path": str(got.path), "format": "diffusers", "files": len(got.files),
              "downloaded_bytes": got.bytes_received, "resumed_from": got.resumed_from,
              "sha256_checked": got.checked, "already_downloaded": got.already_there, "family": fam, "parts": {}}
    if not upload:
        return result
    up = model_folder.upload_folder(store, got.path, name=name, family=fam, progress=progress, cancel=cancel)
    return {**up, **result, "files": result["files"]}


def fetch_model(store, source: str | Source, *, file: str | None = None, revision: str | None = None,
                name: str | None = None, family: str | None = None, token: str | None = None,
                dest_dir: Path | str | None = None, upload: bool = True,
                progress: ProgressCallback | None = None, cancel: threading.Event | None = None) -> dict:
    """Downloads the model (resumable, checked), checks its family, and uploads it with models.upload_model.
    A hub repo without --file that is a diffusers folder (model_index.json at its top) and has no single-file
    checkpoint in its root comes as that folder (diffusers_fetch, model_folder).

    Returns {"path", "downloaded_bytes", "resumed_from", "sha256_checked", "parts", ...the upload's result}."""
    from . import models

    src = source if isinstance(source, Source) else parse_source(source, file, revision)
    known = known_bases.by_key(source) if isinstance(source, str) else None
    known = known or (known_bases.for_file(src.repo, src.file) if src.kind == "hub" else None)
    tok = resolve_token(token)
    files = None
    if src.kind == "hub" and not src.file and known is None:
        files = repo_files(src, tok)
        if diffusers_fetch.is_diffusers_repo(files) and not root_checkpoints(files):
            return _fetch_folder(store, src, files, name=name, family=family, tok=tok, dest_dir=dest_dir,
                                 upload=upload, progress=progress, cancel=cancel)
    dest = Path(dest_dir).expanduser() if dest_dir else checkpoint_dir()
    got = _fetch_one(src, dest, tok, progress, cancel, files)
    try:
        fam = models.family_of(got.path, family or (known.family if known and got.path.name == known.file else None))
    except UserError as err:
        raise _not_a_base(got.path, err) from None
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
