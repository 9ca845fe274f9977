"""Where datasets come from besides a ready folder: a .zip (extracted safely) or images dropped in with a trigger.

Both build a NEW folder under data_dir()/imports/; the user's files are copied, never moved or changed.
A zip is checked entry by entry BEFORE anything is written (zip-slip, absolute paths, symlinks, too many files,
too large, suspicious compression ratios of one entry and of the whole archive), and the bytes actually written are
counted again while extracting. Imports that were never uploaded are removed after a day (clean_imports, run by
every new import); an uploaded one is marked so, and a `dataset check` of a zip removes what it extracted.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from cloudlora_backend.trainer import layout as L

from ..errors import UserError
from ..settings import data_dir
from .models import safe_name


@dataclass(frozen=True)
class ZipLimits:
    max_total_bytes: int = 8 << 30  # uncompressed
    max_files: int = 20_000
    max_ratio: float = 200.0  # uncompressed / compressed, for entries over 1 MiB and for the whole archive
    max_file_bytes: int = 1 << 30
    ratio_floor_bytes: int = 16 << 20  # archives extracting to less than this are never refused for their ratio


UPLOADED_MARKER = ".cloudlora-uploaded"  # in imports/<folder>: uploaded to the store, kept for later uploads
KEEP_UNUSED_S = 24 * 3600  # imports never uploaded are removed after this long
KEEP_EXTRACTING_S = 3600  # a half-finished extraction (its process was killed) after this long


DONE_MARKER = ".cloudlora-extracted"  # hidden: skipped by the check and never uploaded


def imports_dir() -> Path:
    return data_dir() / "imports"


def new_folder(name: str) -> Path:
    """A fresh folder imports/<name>[-N] (never an existing one)."""
    base = imports_dir()
    base.mkdir(parents=True, exist_ok=True)
    stem = safe_name(name, "dataset")
    for i in range(1000):
        candidate = base / (stem if i == 0 else f"{stem}-{i}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise UserError(f"Too many imports named {stem} in {base}.", f"Remove old ones from {base}.")


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _safe_member(info: zipfile.ZipInfo, zip_name: str) -> PurePosixPath | None:
    """The entry's relative path, or None for entries that are skipped silently (hidden/system files, folders)."""
    raw = info.filename
    name = raw.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise UserError(f"{zip_name} contains an absolute path ({raw!r}); it was refused and nothing was extracted.",
                        "Create the zip from inside the dataset folder (relative paths only).")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise UserError(f"{zip_name} contains a path that leaves the extraction folder ({raw!r}, zip-slip); it was "
                        "refused and nothing was extracted.", "Create the zip again from the dataset folder.")
    if _is_symlink(info):
        raise UserError(f"{zip_name} contains a symbolic link ({raw!r}); links are refused and nothing was "
                        "extracted.", "Zip the real files instead of links (e.g. `zip -r` without -y).")
    if any(L.is_hidden(PurePosixPath(p)) for p in parts) or info.is_dir():
        return None
    return PurePosixPath(*[p for p in parts if p not in ("", ".")])


def import_zip(zip_path: Path | str, limits: ZipLimits = ZipLimits(), dest: Path | None = None) -> Path:
    """Extracts a dataset zip into a new folder; returns the dataset root inside it."""
    zip_path = Path(zip_path)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise UserError(f"{zip_path.name} is not a readable zip file ({err}).", "Create the zip again.") from err
    with zf:
        members: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        total = 0
        infos = zf.infolist()
        if len(infos) > limits.max_files:
            raise UserError(f"{zip_path.name} holds {len(infos)} entries (more than {limits.max_files}); refused.",
                            "Split the dataset, or remove files it does not need.")
        for info in infos:
            rel = _safe_member(info, zip_path.name)
            if rel is None:
                continue
            total += info.file_size
            if info.file_size > limits.max_file_bytes or total > limits.max_total_bytes:
                raise UserError(f"{zip_path.name} would extract to more than {limits.max_total_bytes >> 20} MiB "
                                f"(or one file over {limits.max_file_bytes >> 20} MiB); refused as a possible zip "
                                "bomb.", "Check the zip; datasets are usually far smaller.")
            if info.file_size > (1 << 20) and info.file_size > limits.max_ratio * max(1, info.compress_size):
                ratio = info.file_size // max(1, info.compress_size)
                raise UserError(f"{zip_path.name}: {info.filename} compresses {ratio}:1, far more than images do; "
                                "refused as a possible zip bomb.",
                                "Create the zip again from the real files.")
            members.append((info, rel))
        if not members:
            raise UserError(f"{zip_path.name} contains no files.", "Zip the dataset folder with its images.")
        archive = max(1, zip_path.stat().st_size)
        if total > limits.ratio_floor_bytes and total > limits.max_ratio * archive:
            # Many entries just under the per-entry floor can still fill the disk: the archive as a whole counts.
            raise UserError(f"{zip_path.name} ({archive >> 10} KiB) would extract to {total >> 20} MiB, "
                            f"{total // archive}:1, far more than images compress; refused as a possible zip bomb "
                            "and nothing was extracted.", "Check the zip; create it again from the real files.")
        clean_imports()
        # The same zip extracts to the same folder once: imports/<stem>-<sha8>, complete when the marker is there.
        from .hashcache import sha256_file

        final = dest or imports_dir() / f"{safe_name(zip_path.stem, 'dataset')}-{sha256_file(zip_path)[:8]}"
        if (final / DONE_MARKER).exists():
            return dataset_root_in(final)
        shutil.rmtree(final, ignore_errors=True)  # a half-extracted earlier try
        target = new_folder(f"extracting-{final.name}")
        written = 0
        try:
            for info, rel in members:
                out = target.joinpath(*rel.parts)
                if not out.resolve().is_relative_to(target.resolve()):  # belt and braces after the checks above
                    raise UserError(f"{zip_path.name}: {info.filename} leaves the folder; refused.")
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    left = info.file_size
                    while chunk := src.read(1 << 20):
                        left -= len(chunk)
                        written += len(chunk)
                        if left < 0 or written > limits.max_total_bytes:  # the header lied about the size
                            raise UserError(f"{zip_path.name}: {info.filename} is larger than its header says; "
                                            "refused as a possible zip bomb.", "Create the zip again.")
                        dst.write(chunk)
                ts = time.mktime(info.date_time + (0, 0, -1)) if info.date_time[0] >= 1980 else None
                if ts:
                    os.utime(out, (ts, ts))
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
    (target / DONE_MARKER).write_text(zip_path.name, encoding="utf-8")
    final.parent.mkdir(parents=True, exist_ok=True)
    target.replace(final)
    return dataset_root_in(final)


def import_folder_of(path: Path | str) -> Path | None:
    """The imports/<folder> that `path` lies in, or None when it is not an import."""
    base = imports_dir().resolve()
    try:
        rel = Path(path).resolve().relative_to(base)
    except ValueError:
        return None
    return base / rel.parts[0] if rel.parts else None


def mark_uploaded(path: Path | str) -> None:
    """Marks the import that holds `path` as uploaded: clean_imports keeps it (a later upload reuses it)."""
    folder = import_folder_of(path)
    if folder is not None and folder.is_dir():
        (folder / UPLOADED_MARKER).write_text("", encoding="utf-8")


@contextlib.contextmanager
def extracted_for_check(path: Path | str) -> Iterator[Path]:
    """A folder, or a zip extracted for the length of a check: an extraction made for it is removed afterwards
    (one that was there already, e.g. uploaded before, stays)."""
    p = Path(path).expanduser()
    if not (p.is_file() and p.suffix.lower() == ".zip"):
        yield p
        return
    before = set(imports_dir().iterdir()) if imports_dir().is_dir() else set()
    root = import_zip(p)
    folder = import_folder_of(root)
    try:
        yield root
    finally:
        if folder is not None and folder not in before and not (folder / UPLOADED_MARKER).exists():
            shutil.rmtree(folder, ignore_errors=True)


def touch(path: Path | str) -> None:
    """Marks the import that holds `path` as in use now (clean_imports counts a day from here)."""
    folder = import_folder_of(path)
    if folder is not None:
        try:
            os.utime(folder)
        except OSError:
            pass


def clean_imports(now: float | None = None) -> list[Path]:
    """Removes imports never uploaded for a day (and half-finished extractions after an hour); returns them."""
    base = imports_dir()
    if not base.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for folder in base.iterdir():
        if not folder.is_dir() or folder.is_symlink() or (folder / UPLOADED_MARKER).exists():
            continue
        try:
            age = now - folder.stat().st_mtime
        except OSError:
            continue
        keep = KEEP_EXTRACTING_S if folder.name.startswith("extracting-") else KEEP_UNUSED_S
        if age > keep:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def dataset_root_in(folder: Path) -> Path:
    """A zip of 'mydata/10_x/...' extracts to folder/mydata: descend through single wrapper folders."""
    current = folder
    for _ in range(5):
        if L.looks_like_subset(current) or (current / "dataset_info.json").is_file():
            return current
        children = [p for p in current.iterdir() if not L.is_hidden(p)]
        if any(L.looks_like_subset(p) for p in children):
            return current
        dirs = [p for p in children if p.is_dir()]
        if len(dirs) == 1 and len(children) == 1:
            current = dirs[0]
            continue
        return current
    return current


def check_trigger(trigger: str) -> str:
    trigger = (trigger or "").strip()
    if not trigger or re.search(r"[/\\:*?\"<>|\x00-\x1f]", trigger) or trigger in (".", ".."):
        raise UserError(f"'{trigger}' cannot be a trigger word (it names a folder).",
                        "Use a short word without / \\ : * ? \" < > |, e.g. 'sks' or 'mystyle'.")
    return trigger


def from_images(images: list[Path | str], trigger: str, repeats: int | str = 10, name: str | None = None,
                captions: dict[str, str] | None = None) -> Path:
    """Builds <new folder>/<repeats>_<trigger>/ with copies of the images (and their .txt captions when given or
    lying beside them); returns the new dataset root."""
    from cloudlora_backend.trainer.config_values import finite_number

    trigger = check_trigger(trigger)
    try:  # the one numeric check (NaN and infinity refused by name), as every other numeric field
        repeats = finite_number("repeats", repeats, integer=True, lo=1, hi=L.MAX_REPEATS)
    except ValueError as err:
        raise UserError(f"Repeats must be a positive whole number (at most {L.MAX_REPEATS}): {err}.", "Use e.g. 10.") from err
    files = [Path(p) for p in images]
    if not files:
        raise UserError("No images were given.", "Drop or pick the images first.")
    for p in files:
        if not p.is_file() or p.suffix.lower() not in L.IMAGE_EXTS:
            raise UserError(f"{p.name} is not an image this dataset can use.",
                            f"Use {', '.join(L.IMAGE_EXTS)} files.")
    clean_imports()
    root = new_folder(name or trigger)
    subset = root / f"{repeats}_{trigger}"
    subset.mkdir()
    used: set[str] = set()
    for p in files:
        stem = safe_name(p.stem, "image")
        while stem.lower() in used:
            stem += "_"
        used.add(stem.lower())
        shutil.copyfile(p, subset / f"{stem}{p.suffix.lower()}")
        text = (captions or {}).get(p.name)
        if text is None:
            beside = next((p.with_suffix(ext) for ext in L.CAPTION_EXTS if p.with_suffix(ext).is_file()), None)
            text = beside.read_text(encoding="utf-8-sig", errors="replace") if beside else None
        if text is not None:
            (subset / f"{stem}.txt").write_text(text.strip() + "\n", encoding="utf-8")
    return root


def wrap_folder(folder: Path | str, trigger: str | None = None, repeats: int | str | None = None) -> Path:
    """A folder of images (no <repeats>_<trigger> folder) as a dataset: a copy laid out as
    <new folder>/<repeats>_<trigger>/ with the images and their captions; the folder itself is left as it is.
    The trigger and repeats default to what its name suggests ('cldemo' -> 10_cldemo). Returns the new root."""
    from .dataset_check import suggest_subset_name

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder.", "Give the folder that holds the images.")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in L.IMAGE_EXTS
                    and not L.is_hidden(p))
    if not images:
        raise UserError(f"{folder} holds no images directly ({', '.join(L.IMAGE_EXTS)}), so there is nothing to wrap.",
                        "Give the folder whose images should become the dataset.")
    suggested_repeats, suggested_trigger = suggest_subset_name(folder.name).split("_", 1)
    return from_images(images, trigger or suggested_trigger, repeats or suggested_repeats, name=folder.name)
