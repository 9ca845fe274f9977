"""The dataset validation report: errors (no upload) and warnings, each naming the file and the fix, plus a summary.

Pure logic over cloudlora_backend.trainer.layout (the structure) and PIL (the images). Nothing outside the dataset
folder is ever read: symlinks that leave it are reported and never followed. Hidden and system files (.DS_Store,
Thumbs.db, __MACOSX, dot-files) are skipped silently. The codes and messages are documented in README
("Cloud Asset Management" → "Datasets").
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cloudlora_backend.trainer import layout as L

MIN_SIDE = 256  # smaller images are upscaled by training: blurry results
HUGE_SIDE = 8192  # bigger ones only slow caching down
HUGE_PIXELS = 40_000_000
BOMB_PIXELS = 178_956_970  # PIL refuses to open more than this (2 x MAX_IMAGE_PIXELS): a decompression bomb
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
        lines = [f"Dataset {self.root} ({self.kind or 'unreadable'})"]
        if s:
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


def escaping_links(root: Path) -> list[Path]:
    """Symlinks under root whose target is outside root (or missing); found without following any link."""
    root_real = os.path.realpath(root)
    bad = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not L.is_hidden(Path(d))]
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            if p.is_symlink() and not L.is_hidden(p) and (not p.exists() or not _inside(root_real, p)):
                bad.append(p)
    return bad


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
    good = []
    for d in dirs:
        try:
            L.parse_subset_name(d.name)
            good.append(d)
        except L.LayoutError as err:
            code = "repeats-not-positive" if L.SUBSET_RE.match(d.name) else "bad-folder-name"
            report.add("error", code, d.name, str(err),
                       "Rename it to <repeats>_<trigger>, e.g. 10_mytrigger (10 repeats, trigger word 'mytrigger').")
    for f in children:
        if f.is_file() and f.suffix.lower() in L.IMAGE_EXTS:
            report.add("warning", "image-outside-subset", f.name,
                       "This image is not inside a <repeats>_<trigger> folder, so training ignores it.",
                       "Move it into a folder such as 10_mytrigger.")
    if not good:
        if not dirs:
            report.add("error", "empty-dataset", "", "The folder has no <repeats>_<trigger> folder and no images.",
                       "Put the images in a folder named like 10_mytrigger inside it.")
        return None
    configs = sorted(p for p in children if p.is_file() and p.name.startswith("kohya") and p.suffix == ".toml")
    subsets = [L.read_subset(d) for d in good]
    return L.Layout(root, "kohya-sample" if configs else "kohya", subsets, config_file=configs[0] if configs else None)


def _check_image(path: Path) -> tuple[str | None, tuple[int, int] | None, str]:
    """(problem or None, (w, h), sha256). Verifies the container, then decodes (cheaply) to catch truncation."""
    from PIL import Image

    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    import io

    try:
        with Image.open(io.BytesIO(data)) as img:
            size = img.size
            if size[0] * size[1] > BOMB_PIXELS:
                return "bomb", size, digest
            img.verify()
        with Image.open(io.BytesIO(data)) as img:
            if img.format == "JPEG":
                img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))  # fast, still reads every byte
            img.load()
    except Image.DecompressionBombError:
        return "bomb", None, digest
    except Exception as err:  # noqa: BLE001 - PIL raises many types for damaged files
        return f"corrupt: {err}", None, digest
    return None, size, digest


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
    for link in escaping_links(root):
        escaping.add(link)
        report.add("error", "symlink-outside", _rel(root, link),
                   f"This is a symlink to {os.readlink(link)}, outside the dataset folder; it is never followed "
                   "or uploaded.", "Replace the link with a copy of the file, or remove it.")
    layout = _subsets(root, report)
    if layout is None:
        report.summary = {"images": 0, "captions": 0, "images_per_epoch": 0, "triggers": [], "repeats": {},
                          "subsets": []}
        return report
    report.kind = layout.kind
    base = root.parent if layout.kind == "kohya" and L.looks_like_subset(root) else root

    checks = []
    for subset in layout.subsets:
        subset.items = [i if i.caption_file is None or _inside(root_real, i.caption_file) else L.Item(i.image, None)
                        for i in subset.items if i.image not in escaping and _inside(root_real, i.image)]
        subset.orphan_captions = [c for c in subset.orphan_captions if _inside(root_real, c)]
        for other in subset.other_files:
            if other in escaping or L.is_hidden(other):
                continue
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
                caption = item.caption_file.read_bytes().decode("utf-8").strip()
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
