"""Helpers for the training tests (owner T2): SageMaker-style job folders and small generated datasets."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DATASET = ROOT / "samples" / "dataset"
# Small and quick: 64 px, buckets allowed down to 64.
SMALL = 'resolution = "64,64"\nmin_bucket_reso = 64\nmax_bucket_reso = 128\nbucket_reso_steps = 64\n'


def make_job(root: Path, model: Path, dataset: Path, config_text: str | None = None, *, output_name: str = "demo",
             extra_hp: dict | None = None, reg: Path | None = None) -> Path:
    """A job folder laid out like /opt/ml; channels are symlinks, as the local backend makes them."""
    (root / "input" / "config").mkdir(parents=True, exist_ok=True)
    data = root / "input" / "data"
    (data / "model").mkdir(parents=True, exist_ok=True)
    os.symlink(model, data / "model" / model.name)
    os.symlink(dataset, data / "dataset")
    if reg is not None:
        os.symlink(reg, data / "reg")
    if config_text is not None:
        (data / "config").mkdir(parents=True, exist_ok=True)
        (data / "config" / "config.toml").write_text(config_text, encoding="utf-8")
    hp = {"output_name": output_name, **(extra_hp or {})}
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hp.items()}))
    return root


def draw_image(path: Path, size: tuple[int, int], colour=(200, 80, 40), seed: int = 0) -> Path:
    im = Image.new("RGB", size, (30 + seed * 40 % 200, 90, 160))
    d = ImageDraw.Draw(im)
    w, h = size
    d.ellipse([w // 4, h // 4, 3 * w // 4, 3 * h // 4], fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def make_dataset(root: Path, sizes: list[tuple[int, int]], folder: str = "5_sks", captions: bool = True) -> Path:
    for i, size in enumerate(sizes):
        draw_image(root / folder / f"{i:02d}.png", size, seed=i)
        if captions:
            (root / folder / f"{i:02d}.txt").write_text(f"sks, shape {i}", encoding="utf-8")
    return root


def run_entrypoint(root: Path) -> int:
    """The entrypoint in-process (saves the interpreter start-up); the resume test uses a real subprocess."""
    from cloudlora_backend.trainer.__main__ import main
    return main(["--root", str(root)])


def tensorboard_tags(folder: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return set(acc.Tags()["scalars"])


def failure(root: Path) -> str:
    path = root / "output" / "failure"
    return path.read_text(encoding="utf-8") if path.exists() else ""


@pytest.fixture(autouse=True)
def one_thread():
    """Two shared cores: OpenMP threads spinning against other processes make CPU steps ~20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
