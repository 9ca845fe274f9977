"""The dataset validation report: errors (no upload) and warnings, each naming the file and the fix, plus a summary.

Pure logic over cloudlora_backend.trainer.data.layout (the structure) and PIL (the images). Nothing outside the dataset
folder is ever read: symlinks that leave it are reported and never followed. Nothing that is not a regular file is
ever opened (a FIFO named 07.png would block a reader forever): it is named and refused. Hidden and system files
(.DS_Store, Thumbs.db, __MACOSX, dot-files) are skipped silently. The memory of a check is bounded whatever the
images are (each image: image_check.py). The codes and messages are documented in
docs/assets.md.
"""
from __future__ import annotations

import errno
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cloudlora_backend.trainer.data import layout as L

from .. import display
from .image_check import HUGE_PIXELS, HUGE_SIDE, MIN_SIDE, UNSUPPORTED_IMAGE_EXTS, check_image, not_a_file


@dataclass
class Finding:
    level: str  # "error" | "warning"
    code: str
    path: str  # relative to the dataset folder ("" = the folder itself)
    message: str
    fix: str = ""

    def text(self) -> str:
        """One line, whatever the names in it hold (display.name escapes newlines and bidi controls)."""
        where = f"{display.name(self.path)}: " if self.path else ""
        return f"{self.level}: {where}{display.name(self.message)}" + \
            (f" Fix: {display.name(self.fix)}" if self.fix else "")


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
        lines = [f"Dataset {display.name(self.root)} ({self.kind or 'not laid out for training yet'})"]
        if s and not self.kind:
            lines.append(f"  {s.get('images_seen', 0)} image(s) seen; training would read none of them as it is")
        elif s:
            lines.append(f"  images {s['images']}, captions {s['captions']}, images x repeats per epoch "
                         f"{s['images_per_epoch']}")
            for sub in s.get("subsets", []):
                lines.append(f"  {display.name(sub['folder'])}: {sub['images']} images x {sub['repeats']} repeats, "
                             f"trigger '{display.name(sub['trigger'])}'")
        lines += [f.text() for f in self.errors] + [f.text() for f in self.warnings]
        lines.append("OK: ready to upload." if self.ok else f"{len(self.errors)} error(s): fix them before uploading.")
        return "\n".join(lines)


def _rel(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def contains(root_real: str, real: str, pathmod=os.path) -> bool:
    """Is the resolved path `real` the resolved `root_real` or inside it? Compared as paths after normcase (case
    and separators on Windows), never as strings: a drive letter's case or a prefix such as /data vs /data2 decides
    nothing."""
    root_n, real_n = pathmod.normcase(root_real), pathmod.normcase(real)
    try:
        return pathmod.commonpath([root_n, real_n]) == pathmod.normpath(root_n)
    except ValueError:  # different drives, or one relative
        return False


def inside_strictly(root: Path | str, path: Path | str) -> bool:
    """Is `path`, links resolved, strictly inside `root`?"""
    root_real, real = os.path.realpath(root), os.path.realpath(path)
    return contains(root_real, real) and os.path.normcase(real) != os.path.normcase(root_real)


def _inside(root_real: str, path: Path) -> bool:
    return contains(root_real, os.path.realpath(path))


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
            lead = d.name.split("_", 1)[0]
            if not m and "_" in d.name and lead and lead.isdigit():  # '²_x', '٣_x': digits, but not ASCII ones
                code = "repeats-not-ascii"
                message = (f"The folder '{d.name}' starts with '{lead}', which is not written with the digits 0-9, "
                           f"so it is no repeat count and {seen}")
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


def images_in(folder: Path) -> int:
    """Images directly in `folder` (what training would read if the folder were named right)."""
    try:
        return sum(1 for p in folder.iterdir() if p.is_file() and p.suffix.lower() in L.IMAGE_EXTS
                   and not L.is_hidden(p))
    except OSError:
        return 0


def suggest_subset_name(name: str, repeats: int = 10) -> str:
    """The <repeats>_<trigger> name a badly named folder most likely meant: 'cldemo' -> '10_cldemo',
    'cldemo_10' -> '10_cldemo', '10-cldemo' / '10 cldemo' -> '10_cldemo', '0_x' -> '10_x', and digits of other
    scripts written in ASCII: '²_x' -> '2_x', '٣_x' -> '3_x' (only ASCII digits are a repeat count)."""
    import re
    import unicodedata

    def ascii_digits(word: str) -> str | None:
        # str.isdigit() is true for '²' and '٣' too; int('²') raises ValueError. Each digit's value, in ASCII.
        values = [unicodedata.digit(ch, None) for ch in word]
        return "".join(map(str, values)) if values and None not in values else None

    words = [w for w in re.split(r"[\s_\-.]+", name.strip()) if w]
    numbers = [ascii_digits(w) for w in words if ascii_digits(w) is not None]
    rest = [w for w in words if ascii_digits(w) is None]
    if numbers and 0 < int(numbers[0]) <= L.MAX_REPEATS:
        repeats = int(numbers[0])
    trigger = "_".join(rest) or "mytrigger"
    return f"{repeats}_{trigger}"


def _names_windows_cannot_hold(root: Path, report: Report) -> None:
    """Errors for names that are no file on Windows (a dataset made on Linux or macOS is trained, pulled or
    extracted there too), and for names one case-insensitive file system (NTFS, APFS) holds as one file."""
    from .. import portable_names

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not L.is_hidden(Path(d)))
        names = sorted(n for n in dirnames + filenames if not L.is_hidden(Path(n)))
        for name in names:
            why = portable_names.problem(name)
            if why:
                report.add("error", "name-not-portable", _rel(root, Path(dirpath, name)),
                           f"This name cannot be a file or folder on Windows: {why}.",
                           "Rename it with letters, digits, '_', '-' and '.' only.")
        for first, second in portable_names.case_duplicates(names):
            report.add("error", "names-differ-in-case", _rel(root, Path(dirpath, second)),
                       f"This name and '{first}' differ only in case: Windows and macOS hold them as one file.",
                       "Rename one of the two.")


def _not_extracted(root: Path, report: Report) -> None:
    """Warnings naming the entries of the zip this folder was extracted from that were left out (hidden and
    system files such as __MACOSX/): they are neither extracted nor uploaded, and count against no limit."""
    from .extracted import DONE_MARKER, skipped_entries

    for folder in (root, *list(root.parents)[:5]):
        if (folder / DONE_MARKER).is_file():
            names = skipped_entries(folder)
            for name in names[:100]:
                report.add("warning", "not-extracted", name, "This entry of the zip is a hidden or system file: it "
                           "was not extracted and is not uploaded.")
            if len(names) > 100:
                report.add("warning", "not-extracted", "", f"... and {len(names) - 100} more such entries.")
            return


def check_dataset(path: Path | str) -> Report:
    """Validates a dataset folder (Kohya, the Kohya sample, JumpStart). Never modifies it."""
    root = Path(path).expanduser()
    report = Report(str(root))
    if not root.is_dir():
        report.add("error", "not-a-folder", "", f"{root} does not exist or is not a folder.",
                   "Give the dataset folder (the one holding e.g. 10_mytrigger/, or that folder itself).")
        return report
    root_real = os.path.realpath(root)
    _names_windows_cannot_hold(root, report)
    _not_extracted(root, report)
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
        results = list(pool.map(lambda si: check_image(si[1].image), checks))

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
