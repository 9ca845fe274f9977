"""Working on a dataset's content: captions (read, edit, auto-caption) and an optional prepared copy.

Preparation writes a NEW folder (data_dir()/prepared/...): images converted to RGB and resized so their area is
about the family's resolution squared (512 for SD 1.5, 1024 for SDXL), cropped to multiples of 64 (Kohya's bucket
step), never upscaled. The user's originals are never touched. Caption edits and auto-captions write
<image stem>.txt beside the image (or the caption file it already has), only inside the dataset folder.
"""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from cloudlora_backend.trainer.data import layout as L

from .. import atomic, host, private_files
from ..errors import UserError
from ..settings import data_dir
from . import transfer
from .dataset_check import check_dataset
from .models import safe_name

RESOLUTION = {"sd15": 512, "sd2": 768, "sdxl": 1024}
STEP = 64


def _inside(root: Path, path: Path) -> bool:
    from .dataset_check import inside_strictly

    return inside_strictly(root, path)


def caption_path(root: Path | str, image: Path | str) -> Path:
    """The caption file of an image: its existing .txt/.caption, else <stem>.txt. Refuses paths outside root."""
    root, image = Path(root), Path(image)
    if not _inside(root, image) or image.is_symlink():
        raise UserError(f"{image} is not inside the dataset folder {root}.", "Pick an image of this dataset.")
    for ext in L.CAPTION_EXTS:
        candidate = image.with_suffix(ext)
        if candidate.is_file():
            if candidate.is_symlink():
                raise UserError(f"{candidate.name} is a symlink; it is not edited.", "Replace it with a real file.")
            return candidate
    default = image.with_suffix(".txt")
    if default.exists() or default.is_symlink():  # there, but not a regular file (a FIFO would block forever)
        raise UserError(f"{default.name} is not a regular file; it is never read or written.",
                        "Remove it, or replace it with a text file.")
    return default


def read_caption(root: Path | str, image: Path | str) -> str:
    path = caption_path(root, image)
    if not path.exists():
        return ""
    try:
        return path.read_bytes().decode("utf-8-sig").strip()
    except UnicodeDecodeError as err:
        raise UserError(f"{path.name} is not UTF-8 text.", "Save it again as UTF-8, or overwrite it here.") from err


def write_caption(root: Path | str, image: Path | str, text: str) -> Path:
    """Saves the caption (UTF-8, one line) beside the image; returns the caption file."""
    path = caption_path(root, image)
    if not Path(image).is_file():
        raise UserError(f"{Path(image).name} does not exist.", "Validate the dataset again.")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes((" ".join(text.split()) + "\n").encode("utf-8"))  # LF on every OS, like the other captions
    atomic.replace(tmp, path)
    return path


def can_autocaption() -> bool:
    return host.current().interrogate is not None


def autocaption(root: Path | str, *, overwrite: bool = False, progress: transfer.ProgressCallback | None = None,
                cancel: threading.Event | None = None) -> list[str]:
    """Captions the images that have none with the WebUI's interrogator, prefixed by the trigger word.

    Returns the captions written (relative paths). Only inside A1111/Forge (host.interrogate)."""
    interrogate = host.current().interrogate
    if interrogate is None:
        raise UserError("Auto-caption uses the WebUI's interrogator, which is only there inside A1111/Forge.",
                        "Run it from the WebUI tab, or write the captions yourself.")
    from PIL import Image

    report = check_dataset(root)
    todo = [i for i in report.items if overwrite or not i["caption_file"]]
    meter = transfer.Meter(progress, "captioning", len(todo), files_total=len(todo))
    written = []
    for item in todo:
        if cancel is not None and cancel.is_set():
            raise transfer.Cancelled("cancelled")
        with Image.open(item["image"]) as img:
            text = str(interrogate(img.convert("RGB"))).strip()
        trigger = item["trigger"]
        if trigger and not text.lower().startswith(trigger.lower()):
            text = f"{trigger}, {text}" if text else trigger
        write_caption(root, item["image"], text)
        written.append(item["rel"])
        meter.add(1, item=item["rel"], file_done=True)
    return written


def target_size(w: int, h: int, resolution: int) -> tuple[int, int]:
    """(width, height): area about resolution², aspect kept, multiples of 64, never larger than the source."""
    scale = min(1.0, (resolution * resolution / float(w * h)) ** 0.5)
    tw = max(STEP, int(w * scale) // STEP * STEP)
    th = max(STEP, int(h * scale) // STEP * STEP)
    return min(tw, w // STEP * STEP or w), min(th, h // STEP * STEP or h)


def _prepare_image(src: Path, dst: Path, resolution: int) -> None:
    from PIL import Image, ImageOps

    with Image.open(src) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "P"):
            rgba = img.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.split()[-1])
            img = flat
        else:
            img = img.convert("RGB")
        tw, th = target_size(img.width, img.height, resolution)
        scale = max(tw / img.width, th / img.height)
        rw, rh = max(tw, round(img.width * scale)), max(th, round(img.height * scale))
        if (rw, rh) != img.size:
            img = img.resize((rw, rh), Image.LANCZOS)
        left, top = (rw - tw) // 2, (rh - th) // 2
        img = img.crop((left, top, left + tw, top + th))
        if dst.suffix.lower() in (".jpg", ".jpeg"):
            img.save(dst, quality=95)
        else:
            img.save(dst.with_suffix(".png"))


def prepare(root: Path | str, family: str, *, progress: transfer.ProgressCallback | None = None,
            cancel: threading.Event | None = None) -> Path:
    """A prepared copy of the dataset (see the module docstring); returns the new root."""
    if family not in RESOLUTION:
        raise UserError(f"Unknown family '{family}'.", "Use sd15 or sdxl.")
    report = check_dataset(root)
    if not report.ok:
        raise UserError(f"The dataset {root} has errors; fix them before preparing it.",
                        f"See `cloudlora dataset check {root}`.")
    src_root = Path(report.root)
    base = src_root.parent if report.kind == "kohya" and L.looks_like_subset(src_root) else src_root
    out = private_files.ensure_dir(data_dir() / "prepared")  # copies of the user's photos: private
    stem = f"{safe_name(src_root.name, 'dataset')}-{family}"
    dest = out / stem
    n = 1
    while dest.exists():
        dest = out / f"{stem}-{n}"
        n += 1
    meter = transfer.Meter(progress, "preparing", len(report.items), files_total=len(report.items))
    try:
        for item in report.items:
            if cancel is not None and cancel.is_set():
                raise transfer.Cancelled("cancelled")
            rel = Path(item["image"]).relative_to(base)
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            _prepare_image(Path(item["image"]), target, RESOLUTION[family])
            if item["caption_file"]:
                cap = Path(item["caption_file"])
                shutil.copyfile(cap, target.parent / cap.name)
            meter.add(1, item=str(rel), file_done=True)
        for extra in filter(None, [report.summary.get("config_file"),
                                   "dataset_info.json" if report.kind == "jumpstart" else None]):
            shutil.copyfile(src_root / extra, dest / extra)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    _make_private(dest)
    return dest if base == src_root else dest / src_root.name


def _make_private(folder: Path) -> None:
    """PIL and copyfile create files with the umask's mode; the prepared copy is the user's photos: 0700/0600."""
    private_files.tighten(folder, private_files.DIR_MODE)
    for dirpath, dirnames, filenames in os.walk(folder):
        for d in dirnames:
            private_files.tighten(os.path.join(dirpath, d), private_files.DIR_MODE)
        for f in filenames:
            private_files.tighten(os.path.join(dirpath, f), private_files.FILE_MODE)
