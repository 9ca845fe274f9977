"""The dataset validation report: errors (no upload) and warnings, each naming the file and the fix, plus a summary.

Pure logic over cloudlora_backend.trainer.layout (the structure) and PIL (the images). Nothing outside the dataset
folder is ever read: symlinks that leave it are reported and never followed. Nothing that is not a regular file is
ever opened (a FIFO named 07.png would block a reader forever): it is named and refused. Hidden and system files
(.DS_Store, Thumbs.db, __MACOSX, dot-files) are skipped silently. The memory of a check is bounded whatever the
images are: PNGs are verified by streaming their compressed data, JPEGs are decoded at 1/8 scale, other large images
are decoded one at a time (and the largest not at all). The codes and messages are documented in README
("Cloud Asset Management" → "Datasets").
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cloudlora_backend.trainer import layout as L

MIN_SIDE = 256  # smaller images are upscaled by training: blurry results
HUGE_SIDE = 8192  # bigger ones only slow caching down
HUGE_PIXELS = 40_000_000
BOMB_PIXELS = 178_956_970  # PIL refuses to open more than this (2 x MAX_IMAGE_PIXELS): a decompression bomb
BIG_DECODE_PIXELS = 4_000_000  # images this large are decoded one at a time
MAX_DECODE_PIXELS = HUGE_PIXELS  # beyond this, formats without a cheap check (WebP, BMP) get their header checked only
UNSUPPORTED_IMAGE_EXTS = (".gif", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl", ".psd", ".svg", ".ico",
                          ".jp2", ".raw", ".cr2", ".nef", ".dng")


@dataclass
class Finding:
    level: str  # "error" | "warning"
    code: str
    path: str  # relative to the dataset folder ("" = the folder itself)
    message: str
    fix: str = ""

    def text(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.level}: {where}{self.message}" + (f" Fix: {self.fix}" if self.fix else "")


@dataclass
class Report:
    root: str
    kind: str = ""
    findings: list[Finding] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    items: list[dict] = field(default_factory=list)  # for the gallery: image, caption_file, caption, trigger

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, level: str, code: str, path: str, message: str, fix: str = "") -> None:
        self.findings.append(Finding(level, code, path, message, fix))

    def to_dict(self) -> dict:
        return {"root": self.root, "kind": self.kind, "ok": self.ok,
                "errors": [asdict(f) for f in self.errors], "warnings": [asdict(f) for f in self.warnings],
                "summary": self.summary, "items": self.items}

    def text(self) -> str:
        s = self.summary
        lines = [f"Dataset {self.root} ({self.kind or 'not laid out for training yet'})"]
        if s and not self.kind:
            lines.append(f"  {s.get('images_seen', 0)} image(s) seen; training would read none of them as it is")
        elif s:
            lines.append(f"  images {s['images']}, captions {s['captions']}, images x repeats per epoch "
                         f"{s['images_per_epoch']}")
            for sub in s.get("subsets", []):
                lines.append(f"  {sub['folder']}: {sub['images']} images x {sub['repeats']} repeats, "
                             f"trigger '{sub['trigger']}'")
        lines += [f.text() for f in self.errors] + [f.text() for f in self.warnings]
        lines.append("OK: ready to upload." if self.ok else f"{len(self.errors)} error(s): fix them before uploading.")
        return "\n".join(lines)


def _rel(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _inside(root_real: str, path: Path) -> bool:
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def bad_links(root: Path) -> list[tuple[Path, str]]:
    """(symlink, "outside" | "broken" | "loop") for every link under root that must not be followed."""
    root_real = os.path.realpath(root)
    bad = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not L.is_hidden(Path(d))]
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            if not p.is_symlink() or L.is_hidden(p):
                continue
            try:
                os.stat(p)
            except OSError as err:
                bad.append((p, "loop" if err.errno == errno.ELOOP else "broken"))
                continue
            if not _inside(root_real, p):
                bad.append((p, "outside"))
    return bad


def not_a_file(path: Path) -> str | None:
    """What `path` is when it is neither a regular file nor a folder (a FIFO, socket or device), else None.
    Never opens it: opening a FIFO blocks until someone writes to it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _subsets(root: Path, report: Report) -> L.Layout | None:
    """The layout, reporting every badly named folder (layout.scan stops at the first one)."""
    if (root / "dataset_info.json").is_file() or L.looks_like_subset(root):
        try:
            return L.scan(root)
        except L.LayoutError as err:
            report.add("error", "bad-layout", "", str(err))
            return None
    children = sorted(p for p in root.iterdir() if not L.is_hidden(p))
    dirs = [p for p in children if p.is_dir() and not p.is_symlink()]
    loose = [f for f in children if f.is_file() and f.suffix.lower() in L.IMAGE_EXTS]
    good = []
    for d in dirs:
        try:
            L.parse_subset_name(d.name)
            good.append(d)
        except L.LayoutError as err:
            m = L.SUBSET_RE.match(d.name)
            code = ("bad-folder-name" if not m else "too-many-repeats" if int(m.group(1)) > L.MAX_REPEATS
                    else "repeats-not-positive")
            seen = f"training would read none of the {images_in(d)} image(s) it holds."
            message = (f"The folder '{d.name}' is not named <repeats>_<trigger>, so {seen}" if not m
                       else f"{err} So {seen}")
            fix_name = suggest_subset_name(d.name)
            repeats, trigger = fix_name.split("_", 1)
            report.add("error", code, d.name, message,
                       f"Rename it to {fix_name} ({repeats} repeats, trigger word '{trigger}').")
    if loose and not good:
        fix_name = suggest_subset_name(root.name)
        report.add("error", "images-in-root", "",
                   f"The {len(loose)} image(s) lie directly in {root.name}/, not in a <repeats>_<trigger> folder, so "
                   "training would read none of them.",
                   f"Wrap them in {fix_name}/: `cloudlora dataset wrap {root}` (or Wrap in the Datasets panel) makes "
                   f"a copy laid out that way; your folder is left as it is.")
    elif loose:
        for f in loose:
            report.add("warning", "image-outside-subset", f.name,
                       "This image is not inside a <repeats>_<trigger> folder, so training ignores it.",
                       f"Move it into one of the dataset's folders ({good[0].name}).")
    if not good:
        if not dirs and not loose:
            report.add("error", "empty-dataset", "", "The folder has no <repeats>_<trigger> folder and no images.",
                       "Put the images in a folder named like 10_mytrigger inside it.")
        return None
    configs = sorted(p for p in children if p.is_file() and p.name.startswith("kohya") and p.suffix == ".toml")
    subsets = [L.read_subset(d) for d in good]
    return L.Layout(root, "kohya-sample" if configs else "kohya", subsets, config_file=configs[0] if configs else None)


_big_decode = threading.Lock()  # one large decode at a time bounds the check's memory


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def images_in(folder: Path) -> int:
    """Images directly in `folder` (what training would read if the folder were named right)."""
    try:
        return sum(1 for p in folder.iterdir() if p.is_file() and p.suffix.lower() in L.IMAGE_EXTS
                   and not L.is_hidden(p))
    except OSError:
        return 0


def suggest_subset_name(name: str, repeats: int = 10) -> str:
    """The <repeats>_<trigger> name a badly named folder most likely meant: 'cldemo' -> '10_cldemo',
    'cldemo_10' -> '10_cldemo', '10-cldemo' / '10 cldemo' -> '10_cldemo', '0_x' -> '10_x'."""
    import re

    words = [w for w in re.split(r"[\s_\-.]+", name.strip()) if w]
    numbers = [w for w in words if w.isdigit()]
    rest = [w for w in words if not w.isdigit()]
    if numbers and 0 < int(numbers[0]) <= L.MAX_REPEATS:
        repeats = int(numbers[0])
    trigger = "_".join(rest) or "mytrigger"
    return f"{repeats}_{trigger}"


def _check_image(path: Path) -> tuple[str | None, tuple[int, int] | None, str]:
    """(problem or None, (w, h), sha256). Verifies the container, then the image data with bounded memory: a PNG's
    compressed stream is inflated and thrown away piece by piece, a JPEG is decoded at 1/8 scale, other formats are
    decoded whole only up to MAX_DECODE_PIXELS and one large image at a time."""
    from PIL import Image, UnidentifiedImageError

    kind = not_a_file(path)
    if kind:
        return f"not-a-file: {kind}", None, ""
    if os.path.getsize(path) == 0:
        return "corrupt: the file is empty: 0 bytes", None, ""
    digest = _sha256_file(path)
    try:
        with Image.open(path) as img:
            size, fmt = img.size, img.format
            if size[0] * size[1] > BOMB_PIXELS:
                return "bomb", size, digest
            img.verify()  # the container: chunk CRCs and the end marker for PNG, the structure elsewhere
        pixels = size[0] * size[1]
        if fmt == "PNG":
            problem = png_data_problem(path)
            if problem:
                return f"corrupt: {problem}", None, digest
        elif fmt == "JPEG" or pixels <= MAX_DECODE_PIXELS:
            with (_big_decode if pixels > BIG_DECODE_PIXELS else _no_lock), Image.open(path) as img:
                if img.format == "JPEG":
                    img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))  # fast, still reads every byte
                img.load()
    except Image.DecompressionBombError:
        return "bomb", None, digest
    except UnidentifiedImageError:
        return "corrupt: its content is not a PNG, JPEG, WebP or BMP image", None, digest
    except Exception as err:  # noqa: BLE001 - PIL raises many types for damaged files
        return f"corrupt: {str(err).replace(str(path), path.name)}", None, digest
    return None, size, digest


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_no_lock = _NoLock()
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
_ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def _png_raw_size(width: int, height: int, depth: int, colour: int, interlaced: bool) -> int:
    """The bytes a PNG's image data inflates to: filter byte + packed samples, per row of each pass."""
    bits = depth * _CHANNELS.get(colour, 4)
    passes = _ADAM7 if interlaced else [(0, 0, 1, 1)]
    total = 0
    for x0, y0, dx, dy in passes:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w > 0 and h > 0:
            total += h * (1 + (w * bits + 7) // 8)
    return total


def png_data_problem(path: Path, piece: int = 1 << 20) -> str | None:
    """Streams a PNG's IDAT data through zlib without keeping what it inflates to (memory: about `piece` bytes):
    None when the stream is complete and exactly as long as the header says, else what is wrong."""
    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            return "not a PNG file"
        expected = None
        inflater = zlib.decompressobj()
        produced = 0
        while True:
            head = f.read(8)
            if len(head) < 8:
                return "the file ends before its last chunk (truncated)"
            length, ctype = struct.unpack(">I4s", head)
            if ctype == b"IHDR":
                w, h, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", f.read(13))
                expected = _png_raw_size(w, h, depth, colour, interlace == 1)
                f.seek(length - 13 + 4, os.SEEK_CUR)
                continue
            if ctype == b"IDAT":
                left = length
                while left:
                    data = f.read(min(piece, left))
                    if not data:
                        return "the file ends inside its image data (truncated)"
                    left -= len(data)
                    while data:
                        produced += len(inflater.decompress(data, piece))
                        data = inflater.unconsumed_tail
                        if expected is not None and produced > expected:
                            return "its image data is longer than its size says"
                f.seek(4, os.SEEK_CUR)  # the CRC (img.verify() checked it)
                continue
            if ctype == b"IEND":
                produced += len(inflater.flush())
                if not inflater.eof or expected is None or produced != expected:
                    return "its image data is incomplete (truncated or damaged)"
                return None
            f.seek(length + 4, os.SEEK_CUR)


def check_dataset(path: Path | str) -> Report:
    """Validates a dataset folder (Kohya, the Kohya sample, JumpStart). Never modifies it."""
    root = Path(path).expanduser()
    report = Report(str(root))
    if not root.is_dir():
        report.add("error", "not-a-folder", "", f"{root} does not exist or is not a folder.",
                   "Give the dataset folder (the one holding e.g. 10_mytrigger/, or that folder itself).")
        return report
    root_real = os.path.realpath(root)
    escaping = set()
    for link, why in bad_links(root):
        escaping.add(link)
        target = os.readlink(link)
        if why == "loop":
            report.add("error", "symlink-loop", _rel(root, link),
                       f"This is a symlink to {target} that leads back to itself (a loop); it is never followed or "
                       "uploaded.", "Replace the link with a copy of the file, or remove it.")
        elif why == "broken":
            report.add("error", "symlink-broken", _rel(root, link),
                       f"This is a symlink to {target}, which does not exist.",
                       "Replace the link with a copy of the file, or remove it.")
        else:
            report.add("error", "symlink-outside", _rel(root, link),
                       f"This is a symlink to {target}, outside the dataset folder; it is never followed "
                       "or uploaded.", "Replace the link with a copy of the file, or remove it.")
    layout = _subsets(root, report)
    if layout is None:
        seen = images_in(root) + sum(images_in(d) for d in root.iterdir() if d.is_dir() and not d.is_symlink())
        report.summary = {"images": 0, "captions": 0, "images_per_epoch": 0, "triggers": [], "repeats": {},
                          "subsets": [], "images_seen": seen}
        return report
    report.kind = layout.kind
    base = root.parent if layout.kind == "kohya" and L.looks_like_subset(root) else root

    checks = []
    for subset in layout.subsets:
        for entry in sorted(subset.folder.iterdir()):  # FIFOs, sockets, devices: named, never opened
            kind = None if entry in escaping or L.is_hidden(entry) else not_a_file(entry)
            if kind:
                escaping.add(entry)
                report.add("error", "not-a-file", _rel(base, entry),
                           f"This is {kind}, not a file: it is never opened (reading it could wait forever) and "
                           "never uploaded.", "Remove it, or replace it with the real file.")
        subset.items = [i if i.caption_file is None or _inside(root_real, i.caption_file) else L.Item(i.image, None)
                        for i in subset.items if i.image not in escaping and _inside(root_real, i.image)]
        subset.orphan_captions = [c for c in subset.orphan_captions if _inside(root_real, c)]
        for other in subset.other_files:
            if other in escaping or L.is_hidden(other):
                continue
            if other.is_dir() and other.name in L.MASK_FOLDERS:
                continue  # mask images for masked loss: uploaded with their images (datasets.dataset_files)
            if other.is_dir():
                report.add("warning", "nested-folder", _rel(base, other),
                           "Sub-folders inside a <repeats>_<trigger> folder are not read by training.",
                           "Move its images up into the folder, or into their own <repeats>_<trigger> folder.")
            elif other.suffix.lower() in UNSUPPORTED_IMAGE_EXTS:
                report.add("error", "unsupported-image", _rel(base, other),
                           f"{other.suffix} images are not supported for training (only "
                           f"{', '.join(L.IMAGE_EXTS)}).", "Convert it to PNG or JPEG, or remove it.")
            else:
                report.add("warning", "ignored-file", _rel(base, other),
                           "Neither an image nor a caption: ignored (not uploaded).")
        for cap in subset.orphan_captions:
            report.add("warning", "caption-without-image", _rel(base, cap),
                       "This caption has no image with the same name, so it is not used.",
                       "Rename it to match its image (e.g. 1.png + 1.txt), or remove it.")
        if not subset.items:
            report.add("warning", "empty-subset", _rel(base, subset.folder), "This folder has no images.")
        checks += [(subset, item) for item in subset.items]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda si: _check_image(si[1].image), checks))

    seen: dict[str, str] = {}
    images = captions = per_epoch = 0
    per_subset: dict[Path, int] = {}
    for (subset, item), (problem, size, digest) in zip(checks, results):
        rel = _rel(base, item.image)
        if problem == "bomb":
            report.add("error", "huge-image", rel, "This image has too many pixels to open safely (a decompression "
                       "bomb or a huge scan).", "Resize it below 8192 px on its longest side.")
            continue
        if problem and problem.startswith("not-a-file"):
            continue  # named above
        if problem:
            report.add("error", "corrupt-image", rel, f"The image cannot be read ({problem[9:]}).",
                       "Re-export it from the original, or remove it.")
            continue
        w, h = size
        if min(w, h) < MIN_SIDE:
            report.add("warning", "tiny-image", rel, f"The image is only {w}x{h} px (< {MIN_SIDE} px on a side); "
                       "training upscales it, which blurs the LoRA.", "Use a larger image, or remove it.")
        elif max(w, h) > HUGE_SIDE or w * h > HUGE_PIXELS:
            report.add("warning", "huge-image", rel, f"The image is {w}x{h} px; it only slows caching down.",
                       "Use Prepare (a resized copy) or resize it.")
        if digest in seen:
            report.add("warning", "duplicate-image", rel, f"The same image as {seen[digest]}; it is trained twice as "
                       "often.", "Remove one of the two.")
        else:
            seen[digest] = rel
        caption = ""
        if item.caption_file is None:
            report.add("warning", "missing-caption", rel,
                       f"No caption file ({item.image.stem}.txt); the trigger word '{subset.trigger}' is used.",
                       f"Add {item.image.stem}.txt with a description starting with the trigger word.")
        else:
            try:
                caption = item.caption_file.read_bytes().decode("utf-8-sig").strip()  # a BOM is not text
                captions += 1
                if not caption:
                    report.add("warning", "empty-caption", _rel(base, item.caption_file),
                               f"The caption is empty; the trigger word '{subset.trigger}' is used.")
            except UnicodeDecodeError as err:
                report.add("error", "caption-not-utf8", _rel(base, item.caption_file),
                           f"The caption is not UTF-8 text (byte {err.start}).",
                           "Save it again as UTF-8 (most editors have an encoding option).")
        images += 1
        per_subset[subset.folder] = per_subset.get(subset.folder, 0) + 1
        per_epoch += subset.repeats
        report.items.append({"image": str(item.image), "rel": rel, "trigger": subset.trigger, "caption": caption,
                             "caption_file": str(item.caption_file) if item.caption_file else None})
    if images == 0 and not report.errors:
        report.add("error", "empty-dataset", "", "The dataset has no usable image.",
                   f"Add images ({', '.join(L.IMAGE_EXTS)}) to the <repeats>_<trigger> folders.")
    report.summary = {
        "images": images, "captions": captions, "images_per_epoch": per_epoch,
        "triggers": layout.triggers, "repeats": {s.folder.name: s.repeats for s in layout.subsets},
        "subsets": [{"folder": _rel(base, s.folder) or s.folder.name, "repeats": s.repeats, "trigger": s.trigger,
                     "images": per_subset.get(s.folder, 0)} for s in layout.subsets],
        "config_file": _rel(root, layout.config_file) if layout.config_file else None,
        "instance_prompt": layout.instance_prompt, "class_prompt": layout.class_prompt,
    }
    return report
