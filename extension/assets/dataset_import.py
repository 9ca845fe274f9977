"""Where datasets come from besides a ready folder: a .zip (extracted safely) or images dropped in with a trigger.

Both build a NEW folder under data_dir()/imports/; the user's files are copied, never moved or changed, and the
copies are private (0700 folders, 0600 files) whatever the umask.
A zip is checked entry by entry BEFORE anything is written (the entry count from its end record, zip-slip,
absolute paths, symlinks, names Windows cannot hold, too large, suspicious compression ratios of one entry and of
all extracted entries), and the bytes actually written are counted again while extracting. Imports that were never
uploaded are removed after a day (clean_imports, run by every new import); an uploaded one is marked so, and a
`dataset check` of a zip removes what it extracted.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterator

from cloudlora_backend.trainer.data import layout as L

from .. import portable_names, private_files
from ..errors import UserError
from ..settings import data_dir
from .extracted import DONE_MARKER
from .models import safe_name
from .zip_entries import ZipLimits, entry_count, extract_members, safe_member, too_big


UPLOADED_MARKER = ".cloudlora-uploaded"  # in imports/<folder>: uploaded to the store, kept for later uploads
KEEP_UNUSED_S = 24 * 3600  # imports never uploaded are removed after this long
KEEP_EXTRACTING_S = 3600  # a half-finished extraction (its process was killed) after this long


NAME_MARKER = ".cloudlora-name"  # hidden: the name the user gave images dropped in (the folder may carry -N)


def imports_dir() -> Path:
    return data_dir() / "imports"


def new_folder(name: str) -> Path:
    """A fresh folder imports/<name>[-N] (never an existing one), private (0700) whatever the umask: it holds
    copies of the user's photos."""
    base = private_files.ensure_dir(imports_dir())
    stem = safe_name(name, "dataset")
    for i in range(1000):
        candidate = base / (stem if i == 0 else f"{stem}-{i}")
        try:
            candidate.mkdir(mode=private_files.DIR_MODE)
            private_files.tighten(candidate, private_files.DIR_MODE)
            return candidate
        except FileExistsError:
            continue
    raise UserError(f"Too many imports named {stem} in {base}.", f"Remove old ones from {base}.")


def _remove_tree(path: Path) -> None:
    """Removes a folder, clearing read-only flags and retrying (an antivirus scanner or a viewer holds a
    just-extracted file open on Windows); UserError when it is still there."""
    def clear_and_retry(func, p, _exc):
        try:
            os.chmod(p, stat.S_IWRITE | stat.S_IREAD | (stat.S_IEXEC if os.path.isdir(p) else 0))
            func(p)
        except OSError:
            pass

    for delay in (0, 0.1, 0.3, 1.0):
        time.sleep(delay)
        if not os.path.lexists(path):
            return
        shutil.rmtree(path, onerror=clear_and_retry)
    if os.path.lexists(path):
        raise UserError(f"Could not remove {path} (a file in it is open in another program).",
                        "Close the program that shows it (or wait for the virus scan), then try again.")


def _rename_dir(src: Path, dst: Path) -> None:
    """Renames a folder, retried while Windows refuses it (a file inside is open); UserError when it still fails."""
    last: OSError | None = None
    for delay in (0, 0.1, 0.3, 1.0, 2.0):
        time.sleep(delay)
        try:
            src.replace(dst)
            return
        except OSError as err:
            last = err
    raise UserError(f"Could not move the extracted dataset into {dst} ({last}).",
                    "Close programs that show files of it (or wait for the virus scan), then try again.") from last


def import_zip(zip_path: Path | str, limits: ZipLimits = ZipLimits(), dest: Path | None = None) -> Path:
    """Extracts a dataset zip into a new folder; returns the dataset root inside it.

    Entries that are never extracted (hidden and system files, e.g. __MACOSX/) count against no limit: the size
    and ratio limits are those of the extracted entries (their compressed bytes, not the archive's, so padding
    the zip cannot dilute the ratio), and they hold again for the bytes actually written."""
    zip_path = Path(zip_path)
    try:
        declared = entry_count(zip_path)
    except OSError as err:
        raise UserError(f"{zip_path.name} cannot be read ({err}).", "Check the path.") from err
    if declared is not None and declared > limits.max_files:
        raise UserError(f"{zip_path.name} holds {declared} entries (more than {limits.max_files}); refused.",
                        "Split the dataset, or remove files it does not need.")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as err:
        raise UserError(f"{zip_path.name} is not a readable zip file ({err}).", "Create the zip again.") from err
    with zf:
        members: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        skipped: list[str] = []
        total = packed = 0
        infos = zf.infolist()
        if len(infos) > limits.max_files:
            raise UserError(f"{zip_path.name} holds {len(infos)} entries (more than {limits.max_files}); refused.",
                            "Split the dataset, or remove files it does not need.")
        for info in infos:
            rel = safe_member(info, zip_path.name)
            if rel is None:
                if not info.is_dir():
                    skipped.append(info.filename)
                continue
            total += info.file_size
            packed += info.compress_size
            if info.file_size > limits.max_file_bytes or total > limits.max_total_bytes:
                raise too_big(zip_path.name, limits)
            if info.file_size > (1 << 20) and info.file_size > limits.max_ratio * max(1, info.compress_size):
                ratio = info.file_size // max(1, info.compress_size)
                raise UserError(f"{zip_path.name}: {info.filename} compresses {ratio}:1, far more than images do; "
                                "refused as a possible zip bomb.",
                                "Create the zip again from the real files.")
            members.append((info, rel))
        if not members:
            raise UserError(f"{zip_path.name} contains no files.", "Zip the dataset folder with its images.")
        clash = portable_names.case_duplicates(rel.as_posix() for _info, rel in members)
        if clash:
            a, b = clash[0]
            raise UserError(f"{zip_path.name} contains both {a!r} and {b!r}, which are one file on Windows and macOS "
                            "(names differing only in case); refused and nothing was extracted.",
                            "Rename one of them and zip the folder again.")
        packed = max(1, packed)
        if total > limits.ratio_floor_bytes and total > limits.max_ratio * packed:
            # Many entries just under the per-entry floor can still fill the disk: the extracted entries as a whole
            # count (compressed bytes of entries never extracted, such as __MACOSX/pad, dilute nothing).
            raise UserError(f"{zip_path.name}: its files ({packed >> 10} KiB compressed) would extract to "
                            f"{total >> 20} MiB, {total // packed}:1, far more than images compress; refused as a "
                            "possible zip bomb and nothing was extracted.",
                            "Check the zip; create it again from the real files.")
        clean_imports()
        # The same zip extracts to the same folder once: imports/<stem>-<sha8>, complete when the marker is there.
        from .hashcache import sha256_file

        final = dest or imports_dir() / f"{safe_name(zip_path.stem, 'dataset')}-{sha256_file(zip_path)[:8]}"
        if (final / DONE_MARKER).exists():
            return dataset_root_in(final)
        _remove_tree(final)  # a half-extracted earlier try
        target = new_folder(f"extracting-{final.name}")
        try:
            extract_members(zf, zip_path.name, members, target, limits, packed)
            private_files.write_text(target / DONE_MARKER,
                                     json.dumps({"zip": zip_path.name, "skipped": skipped}, ensure_ascii=False))
            private_files.ensure_dir(final.parent)
            _rename_dir(target, final)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # nothing is left behind
            raise
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
        private_files.write_text(folder / UPLOADED_MARKER, "")


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


def intended_name(root: Path | str) -> str:
    """The name the user gave a dataset: a zip's own name (not its imports/<stem>-<sha8> folder), the name or
    trigger of dropped-in images, the folder a zip wrapped, or the folder's own name."""
    root = Path(root)
    top = root
    try:
        base = imports_dir().resolve()
        while top.resolve().parent != base and top.parent != top:
            top = top.parent
        inside = top.resolve().parent == base
    except OSError:
        inside = False
    if not inside or top != root:  # not an import, or a folder inside one (the folder the zip holds)
        return root.name
    try:
        done = json.loads((top / DONE_MARKER).read_text(encoding="utf-8"))
        if isinstance(done, dict) and isinstance(done.get("zip"), str) and done["zip"]:
            return PurePosixPath(done["zip"].replace("\\", "/")).stem
    except (OSError, ValueError):
        pass
    try:
        return (top / NAME_MARKER).read_text(encoding="utf-8").strip() or root.name
    except OSError:
        return root.name


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
    from cloudlora_backend.trainer.config.values import finite_number

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
    private_files.write_text(root / NAME_MARKER, name or trigger)  # the dataset's name: not the folder's -N
    subset = root / f"{repeats}_{trigger}"
    subset.mkdir(mode=private_files.DIR_MODE)
    private_files.tighten(subset, private_files.DIR_MODE)
    used: set[str] = set()
    for p in files:
        stem = safe_name(p.stem, "image")
        while stem.lower() in used:
            stem += "_"
        used.add(stem.lower())
        with open(p, "rb") as src, private_files.open_file(subset / f"{stem}{p.suffix.lower()}", "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)  # a private copy (copyfile would give it the umask's mode)
        text = (captions or {}).get(p.name)
        if text is None:
            beside = next((p.with_suffix(ext) for ext in L.CAPTION_EXTS if p.with_suffix(ext).is_file()), None)
            text = beside.read_text(encoding="utf-8-sig", errors="replace") if beside else None
        if text is not None:
            private_files.write_text(subset / f"{stem}.txt", text.strip() + "\n")
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
