"""A diffusers-format base model (a folder with model_index.json) in the store, beside the single-file checkpoints.

Layout: models/<name>/<folder name>/<the folder's files, relative paths kept> and models/<name>/manifest.json with
"format": "diffusers" and "file": "models/<name>/<folder name>" (the folder's key prefix, which a job's model channel
takes whole: the trainer finds model_index.json in it). The manifest's sha256 is that of the folder's listing
(relative path and sha256 of each file), so the same folder uploaded twice is deduplicated; it is written last,
so a half-uploaded folder never lists. The family is read from the configs (model_index.json, unet/config.json),
never the weights.
"""
from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from cloudlora_backend.trainer.model.family import detect_diffusers_folder

from ..errors import UserError
from . import claims, hashcache, transfer
from .models import FAMILIES, check_name, list_models, manifest_key, now_iso, safe_name, settle_family
from .progress import Meter, ProgressCallback

INDEX = "model_index.json"


def is_diffusers_folder(path: Path | str) -> bool:
    return Path(path).is_dir() and (Path(path) / INDEX).is_file()


def folder_files(folder: Path) -> list[Path]:
    """The folder's files, sorted; hidden ones (a download's .part) left out."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def family_of_folder(folder: Path | str, family: str | None = None) -> str:
    """The folder's family from its configs; the one given must agree (or is taken when the configs cannot tell)."""
    folder = Path(folder)
    family = (family or "").strip().lower() or None
    if family is not None and family not in FAMILIES:
        raise UserError(f"Unknown family '{family}'.", f"Use one of: {', '.join(FAMILIES)}.")
    if not is_diffusers_folder(folder):
        raise UserError(f"{folder} is not a diffusers folder (no {INDEX}).",
                        "Give a folder with model_index.json at its top, or a single-file checkpoint.")
    return settle_family(folder.name, detect_diffusers_folder(folder), family,
                         "its model_index.json and unet/config.json")


def upload_folder(store, folder: Path | str, name: str | None = None, family: str | None = None,
                  progress: ProgressCallback | None = None, cancel: threading.Event | None = None) -> dict:
    """Uploads a diffusers folder (each file through the resumable, checked transfer); returns its manifest plus
    bytes_sent and deduplicated (True: the same folder was already in the store)."""
    folder = Path(folder).expanduser()
    family = family_of_folder(folder, family)
    name = check_name(name or safe_name(folder.name))
    files = folder_files(folder)
    size = sum(p.stat().st_size for p in files)
    meter = Meter(progress, "hashing", size, item=folder.name)
    listing = []
    for p in files:
        before = meter.done
        digest = hashcache.sha256_file(p, progress=lambda d, t, b=before: meter.add(b + d - meter.done),
                                       cancel=cancel)
        listing.append((p.relative_to(folder).as_posix(), digest, p.stat().st_size))
    sha256 = hashlib.sha256("".join(f"{rel}\0{digest}\n" for rel, digest, _ in listing).encode()).hexdigest()
    for m in list_models(store):
        if m.get("sha256") == sha256:
            Meter(progress, "done", size, done=size, item=folder.name).emit()
            return {**m, "bytes_sent": 0, "deduplicated": True}
    claim = claims.claim(store, "models", name, sha256)
    try:
        try:
            existing = json.loads(store.get_bytes(manifest_key(name)))
        except FileNotFoundError:
            existing = None
        except ValueError:
            existing = {}
        if existing is not None and existing.get("sha256") != sha256:
            raise UserError(f"A different model named '{name}' is already in the store.",
                            f"Give another name (--name), or remove it first: cloudlora model rm {name}")
        prefix = f"models/{name}/{safe_name(folder.name)}"
        sent = 0
        for rel, digest, _ in listing:
            r = transfer.upload_file(store, f"{prefix}/{rel}", folder / rel, metadata={"family": family},
                                     sha256=digest, progress=progress, cancel=cancel)
            sent += r.bytes_sent
        manifest = {"name": name, "family": family, "sha256": sha256, "size": size, "file_count": len(listing),
                    "created": now_iso(), "file": prefix, "kind": "model", "format": "diffusers",
                    "source": folder.name, "files": {rel: {"sha256": d, "size": s} for rel, d, s in listing}}
        store.put_bytes(manifest_key(name), json.dumps(manifest, indent=2).encode())  # last: now it lists
    finally:
        claim.release()
    Meter(progress, "done", size, done=size, item=folder.name).emit()
    return {**manifest, "bytes_sent": sent, "deduplicated": not sent}


def download_folder(store, manifest: dict, dest_dir: Path | str, progress=None) -> Path:
    """`model download` of a diffusers model: its folder, every file, into dest_dir/<folder name>."""
    prefix = str(manifest["file"]).rstrip("/") + "/"
    dest = Path(dest_dir) / prefix.rstrip("/").rsplit("/", 1)[-1]
    meter = Meter(progress, "downloading", int(manifest.get("size", 0)), item=dest.name)
    for info in store.list(prefix):
        before = meter.done
        store.download(info.key, dest / info.key[len(prefix):],
                       progress=lambda d, t, b=before: meter.add(b + d - meter.done))
    return dest
