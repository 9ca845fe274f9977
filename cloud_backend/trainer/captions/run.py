"""Captioning a dataset: which images, which caption file each one has, the trigger word of each, and the run over
them with one progress event per image (the JSON lines of `python -m cloudlora_backend.trainer.captions`).

A dataset is a Kohya root (<repeats>_<trigger> folders; the trigger comes from each folder's name), one such
folder, a JumpStart folder (the instance prompt is the trigger), or a flat folder of images (no trigger).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image, UnidentifiedImageError

from ..data import layout
from .write import merge, read_text, split_tags, write_atomic


@dataclass(frozen=True)
class Target:
    image: Path
    caption_file: Path  # where the caption is (or will be) written
    existing: Path | None  # the caption file it has now, if any
    trigger: str


CAPTIONERS = ("wd14", "florence2")


def load_captioner(kind: str, model_dir: Path, *, device: str = "auto", threshold: float = 0.35,
                   character_threshold: float = 0.85, exclude: list[str] | None = None, detail: str = "short"):
    """The captioner `kind` loaded from `model_dir`; CaptionerError names a missing or unusable file."""
    from .wd14 import CaptionerError

    if not Path(model_dir).is_dir():
        raise CaptionerError(f"The captioner folder {model_dir} does not exist; give the folder that holds the "
                             f"{'tagger (model.onnx, selected_tags.csv)' if kind == 'wd14' else 'Florence-2 model'}.")
    if kind == "wd14":
        from .wd14 import TagOptions, Wd14Tagger

        return Wd14Tagger(Path(model_dir), device, TagOptions(threshold, character_threshold, list(exclude or [])))
    if kind == "florence2":
        from .florence2 import Florence2Captioner

        return Florence2Captioner(Path(model_dir), device, detail)
    raise CaptionerError(f"captioner {kind!r} is not one of {', '.join(CAPTIONERS)}")


class DatasetFolderError(ValueError):
    """The folder holds no images to caption; the message names it and the fix."""


def _flat_subset(folder: Path, trigger: str) -> layout.Subset:
    return layout.read_subset(folder, repeats=1, trigger=trigger)


def targets(dataset: Path, trigger: str | None = None, caption_extension: str | None = None) -> list[Target]:
    """Every image of the dataset with its caption file. trigger overrides the folders' own; caption_extension
    (".txt" | ".caption") is the file a new caption goes to, and wins over an existing file of the other kind
    (the job's caption_extension); None: an existing caption file is rewritten in place, a new one gets the
    extension the dataset already uses (.txt when it has none)."""
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise DatasetFolderError(f"Dataset folder {dataset} does not exist; give the folder that holds the images "
                                 "(or the <repeats>_<trigger> folders).")
    try:
        subsets = layout.scan(dataset).subsets
    except layout.LayoutError as err:
        flat = _flat_subset(dataset, "")
        if not flat.items:
            raise DatasetFolderError(f"{err} Or give a folder of images directly.") from err
        subsets = [flat]
    items = [(s, it) for s in subsets for it in s.items]
    if not items:
        raise DatasetFolderError(f"{dataset} holds no images ({', '.join(layout.IMAGE_EXTS)}); add some.")
    if caption_extension is None:
        used = Counter(it.caption_file.suffix.lower() for _s, it in items if it.caption_file is not None)
        default_ext = ".caption" if used[".caption"] > used[".txt"] else ".txt"
    out = []
    for subset, item in items:
        if caption_extension is not None:
            wanted = item.image.with_suffix(caption_extension)
            existing = wanted if wanted.is_file() else item.caption_file
            target = wanted
        else:
            existing = item.caption_file
            target = existing or item.image.with_suffix(default_ext)
        out.append(Target(item.image, target, existing, subset.trigger if trigger is None else trigger))
    return out


def relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def caption_dataset(dataset: Path, captioner, *, mode: str = "keep", trigger: str | None = None,
                    caption_extension: str | None = None, emit: Callable[[dict], None] = lambda event: None) -> dict:
    """Captions every image of `dataset` with `captioner` (.name, .device, .caption(PIL image) -> pieces); emits
    start, one image (or skipped) event per image, and summary, and returns the summary (plus "files": the caption
    file of each image, "changed": those this run wrote)."""
    dataset = Path(dataset)
    todo = targets(dataset, trigger, caption_extension)
    started = time.perf_counter()
    emit({"event": "start", "total": len(todo), "captioner": captioner.name, "device": captioner.device})
    changed: list[Path] = []
    kept = skipped = 0
    for i, t in enumerate(todo, 1):
        rel = relative(t.image, dataset)
        try:
            old = read_text(t.existing)
        except UnicodeDecodeError as err:
            skipped += 1
            emit({"event": "skipped", "done": i, "total": len(todo), "image": rel,
                  "reason": f"its caption {t.existing.name} is not UTF-8 text ({err.reason}); save it as UTF-8"})
            continue
        new = None
        if not (mode == "keep" and split_tags(old)):
            try:
                with Image.open(t.image) as im:
                    im.load()
                    picture = im.copy()
            except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
                skipped += 1
                emit({"event": "skipped", "done": i, "total": len(todo), "image": rel,
                      "reason": f"the image cannot be read ({err}); re-save it as PNG/JPEG or remove it"})
                continue
            pieces = captioner.caption(picture)
            new = merge(old, pieces, t.trigger, mode) or None  # nothing to say never empties a caption
        wrote = new is not None and (new != old or t.existing != t.caption_file)
        if wrote:
            try:
                write_atomic(t.caption_file, new)
            except OSError as err:
                raise DatasetFolderError(f"Cannot write {t.caption_file} ({err}); make the dataset folder writable "
                                         "(its old caption is unchanged).") from err
            changed.append(t.caption_file)
        else:
            kept += 1
        elapsed = time.perf_counter() - started
        emit({"event": "image", "done": i, "total": len(todo), "image": rel, "caption": old if new is None else new,
              "written": wrote, "eta_s": round(elapsed / i * (len(todo) - i), 1)})
    files = [_current(t) for t in todo]
    summary = {"event": "summary", "images": len(todo), "written": len(changed), "kept": kept, "skipped": skipped,
               "seconds": round(time.perf_counter() - started, 2), "tags": tag_counts(f for f in files if f)}
    emit(summary)
    return {**summary, "files": [f for f in files if f], "changed": changed}


def _current(t: Target) -> Path | None:
    """The caption file training reads for this image after the run."""
    if t.caption_file.is_file():
        return t.caption_file
    return t.existing if t.existing is not None and t.existing.is_file() else None


def tag_counts(files) -> dict[str, int]:
    """How often each comma-separated tag occurs across the caption files, most frequent first."""
    counts: Counter = Counter()
    for f in files:
        try:
            counts.update(split_tags(read_text(f)))
        except UnicodeDecodeError:
            pass  # reported as skipped
    return dict(counts.most_common())
