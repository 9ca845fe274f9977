"""Kohya dataset layouts, read without torch or PIL: shared by the trainer and the WebUI's validator.

Accepted layouts (`scan` detects which):
- kohya:        ROOT/<repeats>_<trigger>/img.png + img.txt   (ROOT may also be one such folder itself)
- kohya-sample: the SageMaker Kohya sample: ROOT/kohya-*-config.toml beside ROOT/60_name/
- jumpstart:    ROOT/*.jpg + ROOT/dataset_info.json {"instance_prompt": ..., "class_prompt": ...}
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CAPTION_EXTS = (".txt", ".caption")
# Skipped silently wherever they appear.
SYSTEM_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "__macosx", ".git", ".ipynb_checkpoints"}
# [0-9], not \d: only ASCII digits are a repeat count (\d also matches "²" and "٣", which int() rejects or reads).
SUBSET_RE = re.compile(r"^([0-9]+)_(.+)$")
MAX_REPEATS = 10_000  # far above any real dataset's; a bigger number is a typo (and an epoch that never ends)
# Folders of mask images inside a <repeats>_<trigger> folder (masked loss: conditioning_data_dir = "mask"; masks.py):
# uploaded with the dataset and not reported as stray folders.
MASK_FOLDERS = ("mask", "masks")


def mask_images(image: Path) -> list[Path]:
    """The mask images of a training image: same stem, in a MASK_FOLDERS folder beside it."""
    out = []
    for folder in MASK_FOLDERS:
        for ext in IMAGE_EXTS:
            candidate = image.parent / folder / f"{image.stem}{ext}"
            if candidate.is_file():
                out.append(candidate)
    return out


class LayoutError(ValueError):
    """The folder is not a dataset we can read; the message names the path and the fix."""


@dataclass(frozen=True)
class Item:
    image: Path
    caption_file: Path | None  # None: the trigger word is the caption


@dataclass
class Subset:
    folder: Path
    repeats: int
    trigger: str
    items: list[Item] = field(default_factory=list)
    orphan_captions: list[Path] = field(default_factory=list)  # captions with no image
    other_files: list[Path] = field(default_factory=list)  # neither image nor caption


@dataclass
class Layout:
    root: Path
    kind: str  # "kohya" | "kohya-sample" | "jumpstart"
    subsets: list[Subset]
    config_file: Path | None = None  # the kohya-sample TOML kept with the dataset
    instance_prompt: str = ""
    class_prompt: str = ""

    @property
    def num_images(self) -> int:
        return sum(len(s.items) for s in self.subsets)

    @property
    def images_per_epoch(self) -> int:
        return sum(len(s.items) * s.repeats for s in self.subsets)

    @property
    def triggers(self) -> list[str]:
        return [s.trigger for s in self.subsets]


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name.lower() in SYSTEM_NAMES


def parse_subset_name(name: str) -> tuple[int, str]:
    """'100_demo' -> (100, 'demo'). Raises LayoutError naming the folder and the expected form."""
    m = SUBSET_RE.match(name)
    if not m:
        raise LayoutError(
            f"Folder '{name}' is not named <repeats>_<trigger>.",
        )
    repeats = int(m.group(1))
    if repeats < 1:
        raise LayoutError(f"Folder '{name}': the repeat count must be a positive integer, not {m.group(1)}.")
    if repeats > MAX_REPEATS:
        raise LayoutError(f"Folder '{name}': {m.group(1)} repeats is more than {MAX_REPEATS}; use a repeat count "
                          "from 1 to 10000 (usually 5 to 100).")
    trigger = m.group(2).strip()
    if not trigger:
        raise LayoutError(f"Folder '{name}': the trigger word after '_' is empty.")
    return repeats, trigger


def looks_like_subset(path: Path) -> bool:
    return path.is_dir() and bool(SUBSET_RE.match(path.name))


def read_subset(folder: Path, caption_extensions=CAPTION_EXTS, repeats: int | None = None,
                trigger: str | None = None) -> Subset:
    if repeats is None or trigger is None:
        repeats, trigger = parse_subset_name(folder.name)
    subset = Subset(folder=folder, repeats=repeats, trigger=trigger)
    files = sorted(p for p in folder.iterdir() if not is_hidden(p))
    by_stem_caption: dict[str, Path] = {}
    for p in files:
        if p.is_file() and p.suffix.lower() in caption_extensions:
            by_stem_caption.setdefault(p.stem, p)
    used: set[str] = set()
    for p in files:
        if p.is_dir():
            subset.other_files.append(p)
        elif p.suffix.lower() in IMAGE_EXTS:
            cap = by_stem_caption.get(p.stem)
            if cap is not None:
                used.add(p.stem)
            subset.items.append(Item(p, cap))
        elif p.suffix.lower() not in caption_extensions and p.name != "dataset_info.json":
            subset.other_files.append(p)
    subset.orphan_captions = [c for s, c in by_stem_caption.items() if s not in used]
    return subset


def scan(root: Path | str, caption_extensions=CAPTION_EXTS) -> Layout:
    """Reads the dataset's structure (no image decoding). Raises LayoutError when nothing usable is there."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"Dataset folder {root} does not exist or is not a folder.")
    info = root / "dataset_info.json"
    if info.is_file():
        try:
            meta = json.loads(info.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise LayoutError(f"{info} is not valid JSON: {err}") from err
        prompt = str(meta.get("instance_prompt", "")).strip()
        if not prompt:
            raise LayoutError(f"{info} has no \"instance_prompt\"; add one, e.g. \"a photo of sks dog\".")
        subset = read_subset(root, caption_extensions, repeats=1, trigger=prompt)
        return Layout(root, "jumpstart", [subset], instance_prompt=prompt,
                      class_prompt=str(meta.get("class_prompt", "")).strip())
    if looks_like_subset(root):
        return Layout(root, "kohya", [read_subset(root, caption_extensions)])
    children = sorted(p for p in root.iterdir() if not is_hidden(p))
    dirs = [p for p in children if p.is_dir()]
    configs = sorted(p for p in children if p.is_file() and p.name.startswith("kohya") and p.suffix == ".toml")
    bad = [d for d in dirs if not SUBSET_RE.match(d.name)]
    good = [d for d in dirs if SUBSET_RE.match(d.name)]
    if not good:
        names = ", ".join(d.name for d in bad[:5]) or "no sub-folders"
        raise LayoutError(
            f"{root} has no <repeats>_<trigger> folder (found: {names}). "
            "Put the images in a folder named like '20_mytrigger' (20 repeats, trigger word 'mytrigger')."
        )
    if bad:
        parse_subset_name(bad[0].name)  # raises with the exact reason
    subsets = [read_subset(d, caption_extensions) for d in good]
    kind = "kohya-sample" if configs else "kohya"
    return Layout(root, kind, subsets, config_file=configs[0] if configs else None)
