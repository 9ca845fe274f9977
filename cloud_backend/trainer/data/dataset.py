"""The training data: examples from a scanned dataset (layout.scan), captions as sd-scripts builds them, buckets,
and a deterministic epoch order.

Everything random here (order, flips, caption shuffles and dropouts) is derived from (seed, epoch, position), so
a resumed run sees exactly the batches the interrupted one would have seen, without saving any data-loader state.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import layout as layout_mod
from .buckets import BucketManager, Placement, fixed_placement


class DatasetError(ValueError):
    """The dataset cannot be trained on; the message names the file or folder and the fix."""


@dataclass
class Example:
    image: Path
    caption: str  # the caption before per-step processing (file text, or the trigger / instance prompt)
    size: tuple[int, int]  # the image's own (W, H)
    placement: Placement
    is_reg: bool = False


@dataclass
class Entry:
    """One image occurrence in an epoch."""
    example: Example
    flip: bool
    caption: str


@dataclass
class TrainData:
    examples: list[Example]
    repeats: list[int]
    reg_examples: list[Example] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)
    tag_frequency: dict = field(default_factory=dict)  # ss_tag_frequency: {folder: {tag: count}}

    @property
    def images_per_epoch(self) -> int:
        n = sum(self.repeats)
        return n * 2 if self.reg_examples else n

    @property
    def buckets(self) -> dict[tuple[int, int], int]:
        out: dict[tuple[int, int], int] = {}
        for ex in self.examples + self.reg_examples:
            out[ex.placement.bucket] = out.get(ex.placement.bucket, 0) + 1
        return out


def read_caption(path: Path | None) -> str:
    """The first non-empty line of a caption file ('' when there is none)."""
    if path is None or not path.is_file():
        return ""
    try:
        text = path.read_text(encoding="utf-8-sig")  # an editor's BOM is not part of the caption
    except UnicodeDecodeError as err:
        raise DatasetError(f"Caption {path} is not UTF-8 text ({err}); save it as UTF-8.") from err
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"Image {path} cannot be read ({err}); remove it or re-save it as PNG/JPEG.") from err


def _placer(cfg):
    if not cfg.enable_bucket:
        res = cfg.resolution_wh
        return lambda w, h: fixed_placement(w, h, res)
    bm = BucketManager(cfg.resolution_wh, cfg.min_bucket_reso, cfg.max_bucket_reso, cfg.bucket_reso_steps,
                       cfg.bucket_no_upscale)
    return bm.select


def _caption_for(item: layout_mod.Item, fallback: str, cfg) -> str:
    preferred = item.image.with_suffix(cfg.caption_extension) if cfg.caption_extension else None
    path = preferred if preferred is not None and preferred.is_file() else item.caption_file
    return read_caption(path) or fallback


def examples_from_layout(lay: layout_mod.Layout, cfg, *, is_reg: bool = False,
                         fallback_prompt: str = "") -> tuple[list[Example], list[int]]:
    place = _placer(cfg)
    examples, repeats = [], []
    for subset in lay.subsets:
        fallback = fallback_prompt or subset.trigger
        for item in subset.items:
            size = image_size(item.image)
            examples.append(Example(item.image, _caption_for(item, fallback, cfg), size, place(*size), is_reg))
            repeats.append(subset.repeats)
    return examples, repeats


def build(dataset_dir: Path, cfg, reg_dirs: list[Path] = (), class_prompt: str = "") -> TrainData:
    """Scans the dataset (any layout.scan layout) and the class-image folders. Raises DatasetError."""
    try:
        lay = layout_mod.scan(dataset_dir)
    except layout_mod.LayoutError as err:
        raise DatasetError(str(err)) from err
    if lay.num_images == 0:
        raise DatasetError(f"{dataset_dir} holds no images ({', '.join(layout_mod.IMAGE_EXTS)}); add some to the "
                           "<repeats>_<trigger> folder.")
    fallback = lay.instance_prompt if lay.kind == "jumpstart" else ""
    examples, repeats = examples_from_layout(lay, cfg, fallback_prompt=fallback)
    reg: list[Example] = []
    for folder in reg_dirs:
        reg += reg_examples(folder, cfg, class_prompt or lay.class_prompt)
    tags: dict = {}
    for subset in lay.subsets:
        counts: dict[str, int] = {}
        for ex in examples:
            if ex.image.parent == subset.folder:
                for tag in ex.caption.split(cfg.caption_separator or ","):
                    if tag.strip():
                        counts[tag.strip()] = counts.get(tag.strip(), 0) + 1
        tags[subset.folder.name] = counts
    return TrainData(examples, repeats, reg, lay.triggers, tags)


def reg_examples(folder: Path, cfg, class_prompt: str = "") -> list[Example]:
    """Class images: <repeats>_<class> folders (Kohya), or a plain folder of images (captioned by class_prompt)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    try:
        lay = layout_mod.scan(folder)  # <repeats>_<class> folders: the class token captions, as in sd-scripts
        return examples_from_layout(lay, cfg, is_reg=True)[0]
    except layout_mod.LayoutError:
        subset = layout_mod.read_subset(folder, repeats=1, trigger=class_prompt or "")
        lay = layout_mod.Layout(folder, "kohya", [subset])
        examples = examples_from_layout(lay, cfg, is_reg=True, fallback_prompt=class_prompt)[0]
    missing = [ex.image.name for ex in examples if not ex.caption]
    if missing:
        raise DatasetError(f"Class images in {folder} have no caption (e.g. {missing[0]}): add caption files, name "
                           "the folder <repeats>_<class>, or set class_prompt.")
    return examples


def process_caption(caption: str, cfg, rng: random.Random, epoch: int) -> str:
    """sd-scripts' caption rules: prefix/suffix, dropout, keep_tokens + shuffle, tag dropout."""
    if cfg.caption_prefix:
        caption = f"{cfg.caption_prefix} {caption}"
    if cfg.caption_suffix:
        caption = f"{caption} {cfg.caption_suffix}"
    if cfg.caption_dropout_rate and rng.random() < cfg.caption_dropout_rate:
        return ""
    if cfg.caption_dropout_every_n_epochs and epoch % cfg.caption_dropout_every_n_epochs == 0:
        return ""
    if cfg.shuffle_caption or cfg.caption_tag_dropout_rate:
        sep = cfg.caption_separator or ","
        tokens = [t.strip() for t in caption.strip().split(sep)]
        fixed, flex = tokens[:cfg.keep_tokens], tokens[cfg.keep_tokens:]
        if cfg.shuffle_caption:
            rng.shuffle(flex)
        if cfg.caption_tag_dropout_rate:
            flex = [t for t in flex if rng.random() >= cfg.caption_tag_dropout_rate]
        caption = ", ".join(t for t in fixed + flex if t)
    return caption


def epoch_batches(data: TrainData, cfg, epoch: int, batch_size: int) -> list[list[Entry]]:
    """The epoch's batches, each from one bucket, in a shuffled order that depends only on (seed, epoch)."""
    rng = random.Random(f"{cfg.seed}/{epoch}")
    pool = [ex for ex, n in zip(data.examples, data.repeats) for _ in range(n)]
    if data.reg_examples:
        # Like sd-scripts: as many class images per epoch as training images, cycling through them.
        reg = data.reg_examples
        pool += [reg[i % len(reg)] for i in range(len(pool))]
    by_bucket: dict[tuple[int, int], list[Example]] = {}
    for ex in pool:
        by_bucket.setdefault(ex.placement.bucket, []).append(ex)
    batches: list[list[Example]] = []
    for bucket in sorted(by_bucket):
        items = by_bucket[bucket]
        rng.shuffle(items)
        batches += [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    rng.shuffle(batches)
    out = []
    for b in batches:
        out.append([Entry(ex, bool(cfg.flip_aug and rng.random() < 0.5), process_caption(ex.caption, cfg, rng, epoch))
                    for ex in b])
    return out


def batches_per_epoch(data: TrainData, batch_size: int) -> int:
    counts: dict[tuple[int, int], int] = {}
    for ex, n in zip(data.examples, data.repeats):
        counts[ex.placement.bucket] = counts.get(ex.placement.bucket, 0) + n
    if data.reg_examples:
        total = sum(data.repeats)
        reg = data.reg_examples
        for i in range(total):
            b = reg[i % len(reg)].placement.bucket
            counts[b] = counts.get(b, 0) + 1
    return sum(-(-c // batch_size) for c in counts.values())


def fit_to_bucket(im: Image.Image, ex: Example, flip: bool, resample) -> Image.Image:
    """The example's image geometry: resized to its placement, centre-cropped to its bucket, flipped if asked. The
    pixels and the loss mask go through this one function, so they always line up."""
    rw, rh = ex.placement.resized
    if im.size != (rw, rh):
        im = im.resize((rw, rh), resample)
    bw, bh = ex.placement.bucket
    left, top = (rw - bw) // 2, (rh - bh) // 2
    im = im.crop((left, top, left + bw, top + bh))
    return im.transpose(Image.FLIP_LEFT_RIGHT) if flip else im


def load_pixels(ex: Example, flip: bool) -> np.ndarray:
    """The image resized and centre-cropped to its bucket, as float32 CHW in [-1, 1]."""
    try:
        with Image.open(ex.image) as im:
            im = im.convert("RGB")
            arr = np.asarray(fit_to_bucket(im, ex, flip, Image.LANCZOS), dtype=np.float32)
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"Image {ex.image} cannot be decoded ({err}); remove it or re-save it.") from err
    return (arr / 127.5 - 1.0).transpose(2, 0, 1).copy()


def crop_top_left(ex: Example) -> tuple[int, int]:
    """SDXL's crop conditioning: (top, left) of the centre crop in the resized image."""
    rw, rh = ex.placement.resized
    bw, bh = ex.placement.bucket
    return (rh - bh) // 2, (rw - bw) // 2
