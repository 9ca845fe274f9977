"""The shipped sample dataset is what tools/make_sample_dataset.py draws: small, captioned, with the trigger word."""
from __future__ import annotations

import runpy

import numpy as np
from PIL import Image

from .train_helpers import ROOT, SAMPLE_DATASET


def test_the_sample_dataset_is_regenerated_pixel_for_pixel_by_its_script(tmp_path):
    script = runpy.run_path(str(ROOT / "tools" / "make_sample_dataset.py"))
    script["main"](tmp_path)
    shipped = sorted((SAMPLE_DATASET / "10_cldemo").iterdir())
    assert [p.name for p in shipped] == sorted(p.name for p in tmp_path.iterdir())
    images = [p for p in shipped if p.suffix == ".png"]
    assert len(images) == 6
    for p in shipped:
        if p.suffix == ".png":
            with Image.open(p) as a, Image.open(tmp_path / p.name) as b:
                assert a.size == (512, 512) and np.array_equal(np.asarray(a), np.asarray(b)), p.name
            assert p.stat().st_size < 60_000
        else:
            assert p.read_text() == (tmp_path / p.name).read_text() and p.read_text().startswith("cldemo, ")
