"""Generates the repo's sample dataset (samples/dataset/10_cldemo): a simple made-up character, "cldemo" (an orange
round creature with a blue pointed hat and big eyes), drawn with PIL on varied backgrounds. Deterministic: the same
script always writes the same PNGs and captions. The images are ours, generated, and free to use.

    python tools/make_sample_dataset.py [OUT_DIR]
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 512
SCENES = [  # (background kind, colours, caption words, x, y, scale)
    ("solid", [(70, 130, 200)], "on a plain blue background", 256, 280, 1.0),
    ("vgrad", [(250, 220, 120), (240, 120, 60)], "at sunset, orange sky", 200, 300, 0.8),
    ("stripes", [(235, 235, 235), (200, 60, 60)], "in front of red and white stripes", 300, 260, 0.9),
    ("grass", [(120, 190, 240), (70, 160, 70)], "standing on green grass under a blue sky", 256, 300, 0.7),
    ("checker", [(40, 40, 48), (80, 80, 96)], "on a dark checkered floor", 280, 250, 1.1),
    ("solid", [(245, 240, 225)], "close-up on a cream background", 256, 256, 1.35),
]


def background(kind: str, colours, rng: random.Random) -> Image.Image:
    im = Image.new("RGB", (SIZE, SIZE), colours[0])
    d = ImageDraw.Draw(im)
    if kind == "vgrad":
        (r1, g1, b1), (r2, g2, b2) = colours
        for y in range(SIZE):
            t = y / (SIZE - 1)
            d.line([(0, y), (SIZE, y)], fill=(int(r1 + (r2 - r1) * t), int(g1 + (g2 - g1) * t), int(b1 + (b2 - b1) * t)))
    elif kind == "stripes":
        for x in range(0, SIZE, 64):
            d.rectangle([x, 0, x + 31, SIZE], fill=colours[1])
    elif kind == "grass":
        d.rectangle([0, 340, SIZE, SIZE], fill=colours[1])
        for _ in range(40):
            x = rng.randrange(SIZE)
            d.line([(x, 340), (x + rng.randint(-6, 6), 325)], fill=colours[1], width=3)
    elif kind == "checker":
        for y in range(0, SIZE, 64):
            for x in range(0, SIZE, 64):
                if (x + y) // 64 % 2:
                    d.rectangle([x, y, x + 63, y + 63], fill=colours[1])
    return im


def character(im: Image.Image, cx: int, cy: int, s: float) -> None:
    d = ImageDraw.Draw(im)
    r = int(110 * s)
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(250, 140, 30), outline=(90, 40, 0), width=max(2, int(5 * s)))
    hat = [(cx - int(80 * s), cy - int(80 * s)), (cx + int(80 * s), cy - int(80 * s)), (cx + int(10 * s), cy - int(230 * s))]
    d.polygon(hat, fill=(40, 70, 200), outline=(10, 20, 80))
    d.ellipse([cx - int(10 * s), cy - int(245 * s), cx + int(30 * s), cy - int(205 * s)], fill=(255, 230, 60))
    for ex in (-40, 40):
        x = cx + int(ex * s)
        d.ellipse([x - int(26 * s), cy - int(40 * s), x + int(26 * s), cy + int(12 * s)], fill="white",
                  outline="black", width=max(1, int(3 * s)))
        d.ellipse([x - int(10 * s), cy - int(24 * s), x + int(10 * s), cy - int(4 * s)], fill="black")
    d.arc([cx - int(45 * s), cy + int(5 * s), cx + int(45 * s), cy + int(65 * s)], 20, 160, fill=(90, 40, 0),
          width=max(2, int(6 * s)))


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1234)
    for i, (kind, colours, words, x, y, s) in enumerate(SCENES, 1):
        im = background(kind, colours, rng)
        character(im, x, y, s)
        im.save(out / f"{i:02d}.png", optimize=True)
        (out / f"{i:02d}.txt").write_text(f"cldemo, a cartoon character with a blue hat, {words}\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "samples/dataset/10_cldemo")
