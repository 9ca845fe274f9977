"""Validation loss: a held-out share split as sd-scripts splits it, scored deterministically, its curve in TensorBoard
and the best epoch named at the end."""
from __future__ import annotations

import math
import random
import re

from cloudlora_backend.trainer.config import train_config as config
from cloudlora_backend.trainer.data import dataset as data_mod
from cloudlora_backend.trainer.loop import validation

from .train_helpers import SMALL, failure, make_dataset, make_job, run_entrypoint, tensorboard_tags
from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test


def sd_scripts_split_train_val(paths, split, seed):
    """sd-scripts library/train_util.py split_train_val, transcribed (validation_seed given)."""
    dataset = list(paths)
    state = random.getstate()
    random.seed(seed)
    random.shuffle(dataset)
    random.setstate(state)
    train = dataset[0:math.ceil(len(dataset) * (1 - split))]
    val = dataset[len(dataset) - round(len(dataset) * split):]
    return train, val


def test_the_held_out_images_are_the_ones_sd_scripts_holds_out_and_are_never_trained_on(tmp_path):
    root = make_dataset(tmp_path / "data", [(64, 64)] * 10, folder="3_sks")
    make_dataset(root, [(64, 64)] * 4, folder="2_other")
    cfg = config.parse(SMALL + "validation_split = 0.2\nvalidation_seed = 7\n", "sd15")
    trained, held_out = validation.split(data_mod.build(root, cfg), cfg)
    for folder in ("3_sks", "2_other"):
        names = sorted(p.name for p in (root / folder).glob("*.png"))
        _, want_val = sd_scripts_split_train_val(names, 0.2, 7)
        assert sorted(ex.image.name for ex in held_out if ex.image.parent.name == folder) == sorted(want_val)
        # the rest trains (sd-scripts' own training part overlaps the held-out one when rounding disagrees: 2_other)
        assert sorted(ex.image.name for ex in trained.examples if ex.image.parent.name == folder) == \
            sorted(set(names) - set(want_val))
    assert len(held_out) == 2 + 1
    seen = {e.example.image for epoch in (1, 2, 3) for batch in data_mod.epoch_batches(trained, cfg, epoch, 2)
            for e in batch}
    assert seen and not seen & {ex.image for ex in held_out}
    assert trained.images_per_epoch == 8 * 3 + 3 * 2
    assert len(sd_scripts_split_train_val(sorted(p.name for p in (root / "2_other").glob("*.png")), 0.2, 7)[0]) == 4


def test_validation_runs_at_sd_scripts_four_timesteps():
    cfg = config.parse("validation_split = 0.1\n", "sd15")
    assert validation.timesteps(cfg) == [200, 400, 600, 800]
    cfg = config.parse("validation_split = 0.1\nmin_timestep = 100\nmax_timestep = 600\n", "sd15")
    assert validation.timesteps(cfg) == [200, 300, 400, 500]


def _validation_losses(log: str) -> list[tuple[int, float]]:
    return [(int(e), float(v)) for e, v in re.findall(r"validation step=\d+ epoch=(\d+) loss=([0-9.]+)", log)]


def test_the_validation_loss_is_deterministic_logged_beside_the_training_loss_and_names_the_best_epoch(
        tmp_path, tiny_sd15_path, capsys):
    dataset = make_dataset(tmp_path / "data", [(64, 64)] * 8)
    text = (SMALL + "network_dim = 4\nmax_train_epochs = 3\ntrain_batch_size = 4\nlearning_rate = 1e-3\n"
            "unet_lr = 1e-3\nvalidation_split = 0.25\nsave_every_n_epochs = 1\nvalidate_every_n_steps = 5\n")
    runs = []
    for n in (1, 2):
        root = make_job(tmp_path / f"job{n}", tiny_sd15_path, dataset, text)
        assert run_entrypoint(root) == 0, failure(root)
        runs.append(capsys.readouterr().out)
    first, second = (_validation_losses(log) for log in runs)
    assert [e for e, _ in first] == [1, 2, 3]
    assert first == second  # same weights, same held-out images, same noise: the same numbers
    assert len({v for _, v in first}) > 1  # and they move with the LoRA
    best_epoch, best = min(first, key=lambda p: (p[1], p[0]))
    file = "demo.safetensors" if best_epoch == 3 else f"demo-{best_epoch:06d}.safetensors"
    assert f"best epoch: {best_epoch} (validation loss {best:.4f}): {file}" in runs[0]
    assert "validation step=5 loss=" in runs[0]  # validate_every_n_steps, between the epoch ends
    tags = tensorboard_tags(root / "output" / "tensorboard")
    assert {"loss/validation/current", "loss/validation/epoch_average", "loss/validation/epoch_divergence",
            "loss/validation/step_average", "loss/current"} <= tags
    from safetensors import safe_open
    with safe_open(str(root / "model" / "demo.safetensors"), "pt") as f:
        meta = f.metadata()
    assert (meta["ss_validation_split"], meta["ss_num_validation_images"]) == ("0.25", "2")
