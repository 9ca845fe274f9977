"""Pulling a finished LoRA into the Lora folder: <name>.safetensors + <name>.json (A1111 sidecar) + <name>.preview.png.

Never overwrites: when the name is taken the LoRA becomes <name>-1, <name>-2, ... and the result says so. The
file's `ss_output_name` is rewritten to the final stem (A1111 shows it as an alias), header only, in pure Python.
Then the host refreshes its Lora list so the LoRA shows in txt2img/img2img without a restart.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import tarfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import atomic, host
from ..errors import UserError

SD_VERSION = {"sd15": "SD1", "sd2": "SD2", "sdxl": "SDXL", "flux": "Flux"}  # Forge's SdVersion names
# A1111 1.10.1's SdVersion (Unknown, SD1, SD2, SDXL) has no Flux. Its Lora card takes the sidecar's "sd version"
# only when it is one of those names; otherwise it reads the file's metadata, where anything neither SDXL nor
# SD2 is SD1. So on A1111 a FLUX.1 LoRA's sidecar says "Unknown" (what A1111 can truly say of it), on Forge "Flux".
A1111_SD_VERSION = {"sd15": "SD1", "sd2": "SD2", "sdxl": "SDXL"}


def sd_version(family: str, host_name: str | None = None) -> str:
    """The sidecar's "sd version" of a family as the host (default: the running one) names it."""
    name = host.current().name if host_name is None else host_name
    if name == "a1111":
        return A1111_SD_VERSION.get(family, "Unknown")
    return SD_VERSION.get(family, "Unknown")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp")

# How many LoRA files this process has put into a Lora folder: the WebUI page refreshes its Lora cards when it grows
# (ui/lora_cards.py).
_pulls = 0
_pulls_lock = threading.Lock()


def pulls_so_far() -> int:
    return _pulls


@dataclass
class PullResult:
    file: str
    name: str  # the final stem (what goes in <lora:name:1>)
    renamed: bool
    sidecar: str
    preview: str
    refreshed: bool
    message: str
    extra: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def lora_dir(settings, override: str | Path | None = None) -> Path:
    """--lora-dir / override > the WebUI's Lora folder (honours --lora-dir) > the lora_dir setting."""
    if override:
        return Path(override).expanduser()
    h = host.current()
    if h.in_webui and h.lora_dir:
        return Path(h.lora_dir())
    return settings.effective_lora_dir


def configured_lora_dirs(settings) -> list[Path]:
    """The Lora folders of this machine: the WebUI's (inside it) and the lora_dir setting (or its default)."""
    h = host.current()
    dirs = [Path(h.lora_dir())] if h.in_webui and h.lora_dir else []
    return dirs + [settings.effective_lora_dir]


def requested_lora_dir(settings, requested: str | Path) -> Path:
    """A Lora folder named by a request (REST): a configured Lora folder or a folder inside one, else UserError.

    A web client chooses this path, so it may not name any other folder of the machine (the CLI's --lora-dir,
    typed by the user, may)."""
    path = Path(os.path.abspath(Path(requested).expanduser()))  # ".." folded; links inside the folder are the user's
    allowed = [Path(os.path.abspath(d)) for d in configured_lora_dirs(settings)]
    if not Path(requested).expanduser().is_absolute() or not any(path == d or d in path.parents for d in allowed):
        raise UserError(f"lora_dir '{requested}' is not one of the Lora folders of this machine.",
                        "Leave lora_dir out (the Lora folder), or give a folder inside one of: "
                        + ", ".join(str(d) for d in allowed) + ".")
    return path


def free_stem(folder: Path, stem: str) -> str:
    """stem, else stem-1, stem-2, ...: the first whose .safetensors, .json and .preview.png are all unused."""
    def taken(s: str) -> bool:
        return any((folder / f"{s}{ext}").exists() for ext in (".safetensors", ".json", ".preview.png"))

    if not taken(stem):
        return stem
    n = 1
    while taken(f"{stem}-{n}"):
        n += 1
    return f"{stem}-{n}"


def read_metadata(path: Path) -> dict:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > 100 << 20:
            raise ValueError(f"{path}: not a safetensors file (header of {n} bytes)")
        header = json.loads(f.read(n))
    return dict(header.get("__metadata__") or {})


def copy_with_metadata(src: Path, dest: Path, updates: dict[str, str]) -> None:
    """Copies a .safetensors file, changing only __metadata__ entries. Tensor offsets are relative to the data
    section, so a header of another length stays valid; it is space-padded to 8 bytes as the format recommends."""
    with open(src, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        meta = dict(header.get("__metadata__") or {})
        meta.update({k: str(v) for k, v in updates.items()})
        header["__metadata__"] = meta
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)
        tmp = dest.with_name(dest.name + ".partial")
        with open(tmp, "wb") as out:
            out.write(struct.pack("<Q", len(raw)))
            out.write(raw)
            shutil.copyfileobj(f, out, 8 << 20)
    atomic.replace(tmp, dest)


def extract_artifacts(tar_path: Path, dest: Path) -> None:
    """Extracts model.tar.gz safely (no absolute paths, no '..', no links), and tarballs nested inside it."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path) as tar:
        for member in tar.getmembers():
            name = Path(member.name)
            if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
                continue
            tar.extract(member, dest)
    for nested in list(dest.rglob("*.tar.gz")) + list(dest.rglob("*.tar")):
        extract_artifacts(nested, nested.parent)
        nested.unlink()


def lora_files(model_dir: Path) -> list[Path]:
    """The LoRA files a job produced (final and intermediate), newest name last."""
    if not model_dir.is_dir():
        return []
    return sorted(p for p in model_dir.rglob("*.safetensors") if p.is_file())


def pick_final(model_dir: Path, output_name: str) -> Path | None:
    files = lora_files(model_dir)
    for candidate in (f"{output_name}.safetensors", "custom_lora_model.safetensors"):
        for p in files:
            if p.name == candidate:
                return p
    # else the one that is not an intermediate epoch/step file
    finals = [p for p in files if not _is_intermediate(p.stem)]
    return (finals or files or [None])[-1]


def _is_intermediate(stem: str) -> bool:
    tail = stem.rsplit("-", 1)[-1]
    return tail.isdigit() or tail.startswith("step")


def pick_preview(model_dir: Path, output_name: str, samples: list[Path]) -> Path | None:
    for name in (f"{output_name}.preview.png", f"{output_name}.png"):
        p = model_dir / name
        if p.exists():
            return p
    found = [p for p in model_dir.glob("*.preview.*")]
    if found:
        return found[0]
    images = samples or sorted(p for p in model_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    return images[-1] if images else None  # the last sample shows the most-trained LoRA


def sidecar(*, family: str, triggers: list[str], model: str, dataset: str, steps: int, job_id: str,
            base: dict | None = None, description: str = "") -> dict:
    data = dict(base or {})
    data.update({
        "description": description or data.get("description") or
        f"LoRA trained by Cloud LoRA Trainer on {model} with dataset {dataset}.",
        "sd version": sd_version(family),
        "activation text": ", ".join(t for t in triggers if t) or data.get("activation text", ""),
        "preferred weight": data.get("preferred weight") or 1.0,
        "notes": f"Base model: {model}\nDataset: {dataset}\nSteps: {steps}\nJob: {job_id}",
    })
    data.setdefault("negative text", "")
    return data


def data_digest(path: Path) -> str:
    """SHA-256 of a .safetensors file's tensor data (after the header): equal for a copy whose metadata changed."""
    import hashlib

    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        f.seek(8 + n)
        digest = hashlib.sha256()
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def install(src: Path, dest_dir: Path, lora_name: str, *, sidecar_data: dict, preview: Path | None,
            replace_stem: str | None = None) -> PullResult:
    """Copies one LoRA file into dest_dir under a free name, with sidecar and preview; refreshes the host.

    replace_stem: write under this existing stem instead (only for a file this job pulled itself and nobody
    changed since, e.g. when a chosen epoch becomes the LoRA)."""
    if not src.is_file():
        raise UserError(f"The LoRA file {src} is not there.", "Check the job's outputs (`cloudlora job show ID`).")
    dest_dir.mkdir(parents=True, exist_ok=True)
    stem = replace_stem or free_stem(dest_dir, lora_name)
    renamed = stem != lora_name
    dest = dest_dir / f"{stem}.safetensors"
    try:
        copy_with_metadata(src, dest, {"ss_output_name": stem})
    except (ValueError, struct.error, json.JSONDecodeError):
        shutil.copyfile(src, dest)  # not a safetensors header we can read: copy as is
    side = dest_dir / f"{stem}.json"
    side.write_text(json.dumps(sidecar_data, indent=2), encoding="utf-8")
    prev = ""
    if preview and preview.exists():
        prev_path = dest_dir / f"{stem}.preview.png"
        _copy_as_png(preview, prev_path)
        prev = str(prev_path)
    global _pulls
    with _pulls_lock:
        _pulls += 1
    refreshed = refresh()
    msg = f"Pulled into {dest}" + (" (replacing this job's earlier copy)" if replace_stem else "")
    if renamed:
        msg += f" (named '{stem}' because '{lora_name}' was already taken in {dest_dir})"
    return PullResult(str(dest), stem, renamed, str(side), prev, refreshed, msg)


def _copy_as_png(src: Path, dest: Path) -> None:
    if src.suffix.lower() == ".png":
        shutil.copyfile(src, dest)
        return
    try:  # PIL is there inside the WebUI; outside, keep the bytes (browsers sniff the format)
        from PIL import Image

        with Image.open(src) as im:
            im.save(dest)
    except Exception:
        shutil.copyfile(src, dest)


def refresh() -> bool:
    h = host.current()
    if h.refresh_loras is None:
        return False
    try:
        h.refresh_loras()
        return True
    except Exception:  # a refresh failure must not lose the pulled file
        return False


def now() -> float:
    return time.time()
