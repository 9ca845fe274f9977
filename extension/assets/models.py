"""Checkpoints in the store: upload (deduplicated by SHA-256, resumable), list, download, delete.

Layout: models/<name>/<checkpoint file> byte for byte (SageMaker streams it into the job) and
models/<name>/manifest.json {name, family, sha256, size, file_count, created, file}. The manifest is written last,
so a half-uploaded checkpoint never lists. The name is claimed atomically before anything is sent (claims.py), so
two uploads of different checkpoints under one name cannot both succeed. The family comes from the safetensors
header alone; a .ckpt is a pickle, which the WebUI side never unpickles, so its family must be given.
"""
from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timezone
from pathlib import Path

from cloudlora_backend.trainer.model.family import NotSafetensorsError, detect_family, read_safetensors_header

from ..errors import UserError
from . import claims, flux_parts, hashcache, transfer
from .manifests import NAME_RE, read_all, read_one

FAMILIES = ("sd15", "sd2", "sdxl", "flux")
FAMILY_LABELS = {"sd15": "SD 1.5", "sd2": "SD 2.x", "sdxl": "SDXL", "flux": "FLUX.1", "unknown": "unknown"}
SAFETENSORS_EXTS = (".safetensors",)
PICKLE_EXTS = (".ckpt", ".pt", ".pth")


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def safe_name(text: str, default: str = "model") -> str:
    """A store-safe name: 'My Model v1.5' -> 'My_Model_v1.5'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    name = re.sub(r"\.{2,}", ".", name)[:100].rstrip(".") or default
    if NAME_RE.fullmatch(name):
        return name
    stem, dot, rest = name.partition(".")  # 'CON' -> 'CON_', 'con.v1' -> 'con_.v1' (device names on Windows)
    return f"{stem}_{dot}{rest}"[:100]


def name_from_path(path: Path | str) -> str:
    """A store-safe name from a file name: 'My Model v1.5.safetensors' -> 'My_Model_v1.5'."""
    return safe_name(Path(path).stem)


def check_name(name: str, what: str = "model") -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise UserError(f"'{name}' is not a valid {what} name.",
                        "Use letters, digits, '.', '_' and '-' (up to 100 characters), starting with a letter "
                        "or digit.")
    return name


def manifest_key(name: str) -> str:
    return f"models/{name}/manifest.json"


def family_of(path: Path | str, family: str | None = None) -> str:
    """The checkpoint's family: from its safetensors header (never the weights), or the one given for a pickle."""
    path = Path(path)
    family = (family or "").strip().lower() or None
    if family is not None and family not in FAMILIES:
        raise UserError(f"Unknown family '{family}'.", f"Use one of: {', '.join(FAMILIES)}.")
    ext = path.suffix.lower()
    if ext in PICKLE_EXTS:
        if family == "flux":
            raise UserError(f"{path.name} is a pickle; FLUX.1 checkpoints are trained from .safetensors only.",
                            "Use the .safetensors release of the model (flux1-dev.safetensors).")
        if family is None:
            raise UserError(
                f"{path.name} is a pickle (.ckpt) checkpoint; its family cannot be read without unpickling it, "
                "which the extension never does (a pickle can run code).",
                "Give the family (--family sd15|sd2|sdxl, or pick it in the tab), or convert it to .safetensors.")
        return family
    if ext not in SAFETENSORS_EXTS:
        raise UserError(f"{path.name} is not a checkpoint file (.safetensors or .ckpt).",
                        "Pick the model's .safetensors file (models/Stable-diffusion).")
    try:
        detected = detect_family(read_safetensors_header(path))
    except NotSafetensorsError as err:
        raise UserError(str(err), "Check that the file is a complete .safetensors checkpoint.") from err
    return settle_family(path.name, detected, family, "its tensor names",
                         "; a LoRA, VAE, text encoder or refiner is not a base model")


def settle_family(name: str, detected: str, family: str | None, by: str, unknown_note: str = "") -> str:
    """The family from what was `detected` (by `by`) and what the user gave: a disagreement, or nothing known on
    either side, is a UserError with the fix."""
    if detected == "unknown":
        if family is None:
            raise UserError(f"The family of {name} could not be told from {by} (not SD 1.5, SD 2, SDXL or "
                            f"FLUX.1{unknown_note}).", "If it is a base model, give the family "
                            "(--family sd15|sd2|sdxl|flux).")
        return family
    if family is not None and family != detected:
        raise UserError(f"{name} is {FAMILY_LABELS[detected]} by {by}, not {FAMILY_LABELS[family]}.",
                        f"Leave the family out, or give --family {detected}.")
    return detected


def list_models(store, broken: list | None = None) -> list[dict]:
    """Every complete checkpoint (one with a manifest), sorted by name; broken manifests are skipped (and appended
    to `broken`), never allowed to break the listing."""
    return read_all(store, "models", broken)


def get_model(store, name: str) -> dict:
    try:
        return json.loads(store.get_bytes(manifest_key(check_name(name))))
    except FileNotFoundError:
        raise UserError(f"No model named '{name}' in the store ({store.uri('models/')}).",
                        "See `cloudlora model list`, or upload it with `cloudlora model upload PATH`.") from None
    except ValueError as err:
        raise UserError(f"The manifest of model '{name}' in the store is damaged ({err}).",
                        f"Upload the model again, or remove it: cloudlora model rm {name} --yes") from None


def upload_model(store, path: Path | str, name: str | None = None, family: str | None = None,
                 progress: transfer.ProgressCallback | None = None,
                 cancel: threading.Event | None = None, parts: dict | None = None) -> dict:
    """Uploads a checkpoint; returns its manifest plus bytes_sent and deduplicated (True: it was already there).

    parts: FLUX.1's separate {"clip_l", "t5xxl", "ae"} files for a transformer-only checkpoint (flux_parts.py)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{path} does not exist or is not a file.",
                        "Give the path of a checkpoint (.safetensors), e.g. from models/Stable-diffusion.")
    family = family_of(path, family)
    part_files = flux_parts.check(path, family, parts)
    name = check_name(name or name_from_path(path))
    size = path.stat().st_size
    hasher = transfer.Meter(progress, "hashing", size, item=path.name)
    sha256 = hashcache.sha256_file(path, progress=lambda d, t: hasher.add(d - hasher.done), cancel=cancel)
    for m in list_models(store):
        if m.get("sha256") == sha256:  # the same bytes are already in the store
            transfer.Meter(progress, "done", size, done=size, item=path.name).emit()
            return {**m, "bytes_sent": 0, "deduplicated": True}
    claim = claims.claim(store, "models", name, sha256)  # atomic: one of two racing uploads gets the name
    try:
        existing = _manifest_or_none(store, name)  # looked at after the claim: no upload can finish meanwhile
        if existing is not None and existing.get("sha256") != sha256:
            raise UserError(f"A different model named '{name}' is already in the store.",
                            f"Give another name (--name), or remove it first: cloudlora model rm {name}")
        key = f"models/{name}/{path.name}"
        result = transfer.upload_file(store, key, path, metadata={"family": family}, sha256=sha256,
                                      progress=progress, cancel=cancel)
        manifest = {"name": name, "family": family, "sha256": sha256, "size": size, "file_count": 1,
                    "created": now_iso(), "file": key, "kind": "model", "source": path.name}
        sent = result.bytes_sent
        if part_files:  # after the checkpoint, each through the same resumable, checked transfer
            manifest["parts"] = {}
            for part, file in part_files.items():
                part_sha = hashcache.sha256_file(file, cancel=cancel)
                part_key = flux_parts.key_for(name, part, file)
                r = transfer.upload_file(store, part_key, file, metadata={"family": family, "part": part},
                                         sha256=part_sha, progress=progress, cancel=cancel)
                sent += r.bytes_sent
                manifest["parts"][part] = {"file": part_key, "sha256": part_sha, "size": file.stat().st_size,
                                           "source": file.name}
            manifest["size"] = size + sum(p["size"] for p in manifest["parts"].values())
            manifest["file_count"] = 1 + len(part_files)
        store.put_bytes(manifest_key(name), json.dumps(manifest, indent=2).encode())  # last: now it lists
    finally:
        claim.release()  # the manifest guards the name now (or nothing was written)
    return {**manifest, "bytes_sent": sent, "deduplicated": result.skipped and not sent}


def _manifest_or_none(store, name: str) -> dict | None:
    return read_one(store, manifest_key(name))


def delete_model(store, name: str, *, force: bool = False) -> int:
    """Removes the model (manifest first, so it stops listing at once); returns the number of objects removed.
    `force` also clears a half-uploaded one (parts of a file and its name claim, no manifest)."""
    check_name(name)
    if not force:
        get_model(store, name)
    had_manifest = store.head(manifest_key(name)) is not None
    store.delete(manifest_key(name))
    return int(had_manifest) + store.delete_prefix(f"models/{name}/")


def download_model(store, name: str, dest_dir: Path | str,
                   progress: transfer.ProgressCallback | None = None) -> Path:
    manifest = get_model(store, name)
    dest = Path(dest_dir) / manifest["file"].rsplit("/", 1)[-1]
    meter = transfer.Meter(progress, "downloading", int(manifest.get("size", 0)), item=dest.name)
    store.download(manifest["file"], dest, progress=lambda d, t: meter.add(d - meter.done))
    return dest


def usage(store) -> int:
    """Bytes the models take in the store."""
    return sum(o.size for o in store.list("models/"))
