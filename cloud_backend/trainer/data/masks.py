"""Masked loss: a weight per latent pixel from the image's transparency or from a mask image, as sd-scripts does it.

sd-scripts `docs/masked_loss_README.md` and `library/custom_train_functions.py` `apply_masked_loss`:
- `alpha_mask`: the image's alpha channel is the mask (0 = ignored, 255 = trained, 127 about half); an image without
  alpha is all ones. `alpha_mask` alone switches masked loss on (train_network.py applies it whenever the batch
  has alpha masks).
- a mask image per training image (sd-scripts: the ControlNet dataset's `conditioning_data_dir`): same file name,
  white = train, black = ignore, grey in between; its R channel is used. Here the folder is named by
  `conditioning_data_dir` *inside each <repeats>_<trigger> folder* (the dataset travels as one channel), e.g.
  `5_sks/mask/01.png` for `5_sks/01.png`. Every training image needs one (sd-scripts stops too).
- the mask is resized and cropped with the image to its bucket, then reduced to the latent size with area
  interpolation, and multiplies the per-pixel loss before the mean (sd-scripts does not renormalise either).
Class (regularisation) images have no mask: they weigh fully.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .dataset import DatasetError, Example, fit_to_bucket
from .layout import IMAGE_EXTS


def enabled(cfg) -> bool:
    return bool(cfg.masked_loss or cfg.alpha_mask)


def mask_file(example: Example, cond_dir: str) -> Path | None:
    folder = Path(cond_dir) if Path(cond_dir).is_absolute() else example.image.parent / cond_dir
    for ext in (example.image.suffix, *IMAGE_EXTS):
        candidate = folder / f"{example.image.stem}{ext}"
        if candidate.is_file():
            return candidate
    return None


def check(examples: list[Example], cfg) -> None:
    """Fails before training when a training image has no mask image. Raises DatasetError."""
    if not enabled(cfg) or not cfg.conditioning_data_dir:
        return
    missing = [ex for ex in examples if not ex.is_reg and mask_file(ex, cfg.conditioning_data_dir) is None]
    if missing:
        ex = missing[0]
        raise DatasetError(
            f"masked_loss: {len(missing)} image(s) have no mask image, e.g. {ex.image.parent.name}/{ex.image.name} "
            f"(looked for {ex.image.parent.name}/{cfg.conditioning_data_dir}/{ex.image.stem}.png). Add a mask with "
            "the same file name (white = train, black = ignore), or use alpha_mask = true with transparent PNGs.")


def _to_bucket(im: Image.Image, example: Example, flip: bool) -> np.ndarray:
    """One channel through the same resize + centre crop + flip as the pixels (data.fit_to_bucket)."""
    im = fit_to_bucket(im, example, flip, Image.BILINEAR)
    return np.asarray(im, dtype=np.float32) / 255.0


def load(example: Example, flip: bool, cfg) -> torch.Tensor:
    """The example's mask at latent size (H/8, W/8), values 0..1."""
    bw, bh = example.placement.bucket
    if example.is_reg:
        return torch.ones((bh // 8, bw // 8))
    try:
        if cfg.conditioning_data_dir:
            path = mask_file(example, cfg.conditioning_data_dir)
            if path is None:
                raise DatasetError(f"masked_loss: no mask image for {example.image}")
            with Image.open(path) as im:
                channel = im.convert("RGB").getchannel("R")
        else:
            with Image.open(example.image) as im:
                if "A" not in im.getbands() and not (im.mode == "P" and "transparency" in im.info):
                    return torch.ones((bh // 8, bw // 8))
                channel = im.convert("RGBA").getchannel("A")
        full = torch.from_numpy(_to_bucket(channel, example, flip))[None, None]
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"masked_loss: the mask of {example.image} cannot be read ({err}).") from err
    return torch.nn.functional.interpolate(full, size=(bh // 8, bw // 8), mode="area")[0, 0]


class MaskCache:
    """Masks per (image, flip), computed once (they are small: latent size)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.memory: dict[tuple[str, bool], torch.Tensor] = {}

    def get(self, example: Example, flip: bool) -> torch.Tensor:
        key = (str(example.image), flip)
        if key not in self.memory:
            self.memory[key] = load(example, flip, self.cfg)
        return self.memory[key]

    def batch(self, entries, device) -> torch.Tensor:
        """(B, 1, h, w) masks of a batch's entries."""
        return torch.stack([self.get(e.example, e.flip) for e in entries])[:, None].to(device)
