"""Aspect-ratio bucketing, as sd-scripts does it: wide images in wide buckets, tall in tall, never upscaled."""
from __future__ import annotations

from pathlib import Path

from cloudlora_backend.trainer.config import train_config as config
from cloudlora_backend.trainer.data import dataset as data
from cloudlora_backend.trainer.data.buckets import BucketManager, make_bucket_resolutions

from .train_helpers import make_dataset


def test_the_predefined_buckets_fit_the_area_on_the_step_grid():
    resos = make_bucket_resolutions((512, 512), 256, 1024, 64)
    assert (512, 512) in resos and (704, 320) in resos and (320, 704) in resos
    assert all(w * h <= 512 * 512 and w % 64 == 0 and h % 64 == 0 and 256 <= min(w, h) for w, h in resos)


def test_an_image_goes_to_the_bucket_with_the_nearest_aspect_and_is_resized_to_cover_it():
    bm = BucketManager((512, 512), 256, 1024, 64, no_upscale=False)
    # 2:1 -> the nearest predefined ratio is 704x320 (2.2); the width is matched, the height cropped.
    p = bm.select(1024, 512)
    assert p.bucket == (704, 320) and p.resized == (704, 352)
    assert bm.select(512, 1024).bucket == (320, 704)
    assert bm.select(300, 300).bucket == (512, 512)  # upscaled to the square bucket


def test_with_no_upscale_small_images_keep_their_size_and_large_ones_shrink_to_the_area():
    bm = BucketManager((512, 512), 256, 1024, 64, no_upscale=True)
    p = bm.select(300, 200)
    assert p.bucket == (256, 192) and p.resized == (300, 200)
    big = bm.select(2048, 1024)
    assert big.bucket[0] * big.bucket[1] <= 512 * 512 and big.bucket[0] > big.bucket[1]


def test_a_dataset_of_mixed_shapes_lands_in_wide_tall_and_square_buckets(tmp_path: Path):
    root = make_dataset(tmp_path / "ds", [(256, 128), (260, 130), (128, 256), (200, 200)])
    cfg = config.parse('resolution = "128,128"\nmin_bucket_reso = 64\nmax_bucket_reso = 256\nbucket_reso_steps = 32\n'
                       'bucket_no_upscale = false\n', "sd15")
    td = data.build(root, cfg)
    by_name = {ex.image.name: ex.placement.bucket for ex in td.examples}
    wide, wide2, tall, square = (by_name[f"0{i}.png"] for i in range(4))
    assert wide == wide2 and wide[0] > wide[1] and tall == (wide[1], wide[0]) and square == (128, 128)
    # every batch holds one bucket only, and pixels come out at the bucket's size
    for batch in data.epoch_batches(td, cfg, 1, 4):
        assert len({e.example.placement.bucket for e in batch}) == 1
    ex = td.examples[0]
    assert data.load_pixels(ex, flip=False).shape == (3, ex.placement.bucket[1], ex.placement.bucket[0])


def test_without_bucketing_every_image_is_cropped_to_the_resolution(tmp_path: Path):
    root = make_dataset(tmp_path / "ds", [(256, 128), (128, 256)])
    cfg = config.parse('resolution = "64,64"\nmin_bucket_reso = 64\nenable_bucket = false\n', "sd15")
    td = data.build(root, cfg)
    assert {ex.placement.bucket for ex in td.examples} == {(64, 64)}
