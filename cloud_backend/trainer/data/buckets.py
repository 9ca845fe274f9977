"""Aspect-ratio bucketing exactly as sd-scripts does it (model_util.make_bucket_resolutions + BucketManager).

Pure Python: every image gets a bucket (W, H) and the size it is resized to before the centre crop to the bucket.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


def make_bucket_resolutions(max_reso: tuple[int, int], min_size: int = 256, max_size: int = 1024,
                            divisible: int = 64) -> list[tuple[int, int]]:
    """The predefined buckets: every (w, h) on the `divisible` grid with area <= max_reso's, sides in range."""
    max_width, max_height = max_reso
    max_area = max_width * max_height
    resos = set()
    width = int(math.sqrt(max_area) // divisible) * divisible
    resos.add((width, width))
    width = min_size
    while width <= max_size:
        height = min(max_size, int((max_area // width) // divisible) * divisible)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
        width += divisible
    return sorted(resos)


@dataclass(frozen=True)
class Placement:
    bucket: tuple[int, int]  # (W, H) the training tensor has
    resized: tuple[int, int]  # (W, H) the image is resized to before the centre crop to `bucket`


class BucketManager:
    """Places images in buckets. With no_upscale, buckets come from the images themselves (never enlarged)."""

    def __init__(self, resolution: tuple[int, int], min_size: int, max_size: int, reso_steps: int,
                 no_upscale: bool):
        self.max_reso = resolution
        self.max_area = resolution[0] * resolution[1]
        self.reso_steps = reso_steps
        self.no_upscale = no_upscale
        self.predefined = [] if no_upscale else make_bucket_resolutions(resolution, min_size, max_size, reso_steps)
        self.predefined_set = set(self.predefined)
        self.predefined_ratios = [w / h for w, h in self.predefined]

    def round_to_steps(self, x: float) -> int:
        x = int(x + 0.5)
        return x - x % self.reso_steps

    def select(self, width: int, height: int) -> Placement:
        aspect = width / height
        if not self.no_upscale:
            reso = (width, height)
            if reso not in self.predefined_set:
                errors = [abs(r - aspect) for r in self.predefined_ratios]
                reso = self.predefined[errors.index(min(errors))]
            ar_reso = reso[0] / reso[1]
            scale = reso[1] / height if aspect > ar_reso else reso[0] / width
            resized = (int(width * scale + 0.5), int(height * scale + 0.5))
            return Placement(reso, resized)
        if width * height > self.max_area:
            # Too large: shrink keeping the aspect, rounding whichever side keeps the aspect closer.
            rw = math.sqrt(self.max_area * aspect)
            rh = self.max_area / rw
            bw = self.round_to_steps(rw)
            bh_in_w = max(self.round_to_steps(bw / aspect), 1)
            ar_w = bw / bh_in_w
            bh = self.round_to_steps(rh)
            bw_in_h = self.round_to_steps(bh * aspect)
            ar_h = bw_in_h / max(bh, 1)
            if abs(ar_w - aspect) < abs(ar_h - aspect):
                resized = (bw, int(bw / aspect + 0.5))
            else:
                resized = (int(bh * aspect + 0.5), bh)
        else:
            resized = (width, height)
        # The bucket is the largest step multiple inside the image: crop, never pad.
        bucket = (max(resized[0] - resized[0] % self.reso_steps, self.reso_steps),
                  max(resized[1] - resized[1] % self.reso_steps, self.reso_steps))
        resized = (max(resized[0], bucket[0]), max(resized[1], bucket[1]))
        return Placement(bucket, resized)


def fixed_placement(width: int, height: int, resolution: tuple[int, int]) -> Placement:
    """Without bucketing: scale to cover the training resolution, then centre-crop to it."""
    tw, th = resolution
    scale = max(tw / width, th / height)
    resized = (max(int(width * scale + 0.5), tw), max(int(height * scale + 0.5), th))
    return Placement((tw, th), resized)
