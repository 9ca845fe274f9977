"""Validation loss: a held-out share of the dataset, scored at fixed timesteps with fixed noise, so the number moves
only when the LoRA does. Which epoch to keep is then the one with the lowest validation loss.

As sd-scripts (`library/train_util.py` `split_train_val`, `train_network.py`'s validation loop, `docs/validation.md`):
- `validation_split`: per image folder, the images are shuffled with `validation_seed` (default: `seed`) and the
  last round(n * split) are held out. Class (regularisation) images are never held out. sd-scripts trains on the
  first ceil(n * (1 - split)), which overlaps the held-out images when the rounding disagrees (4 images at 0.2:
  all 4 trained, 1 held out); here the training part is the rest, so a held-out image is never trained on.
- each validation run scores every held-out batch (at most `max_validation_steps` batches) at 4 timesteps spread
  evenly over [min_timestep, max_timestep] (200, 400, 600, 800 by default), with the same loss as training
  (min-SNR weights, masks, v-prediction), and reports the mean.
- runs at the end of every `validate_every_n_epochs`-th epoch and every `validate_every_n_steps` steps.
- TensorBoard: `loss/validation/epoch_average` and `loss/validation/epoch_divergence` (step = epoch, as sd-scripts'
  epoch_logging), `loss/validation/step_average` and `.../step_divergence` (step = global step), and
  `loss/validation/current` at the global step of every run (the curve the Train tab draws beside the training loss).
Unlike sd-scripts, the noise comes from generators seeded by (validation_seed, batch, timestep), so it never draws
from or disturbs the training RNG, and a resumed run scores exactly like an uninterrupted one.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.dataset import Entry, Example, TrainData

NUM_TIMESTEPS = 4


def split_paths(items: list, split: float, seed: int) -> tuple[list, list]:
    """sd-scripts' split_train_val on one folder's items: (training part, validation part), without its overlap."""
    items = list(items)
    random.Random(seed).shuffle(items)
    val_start = len(items) - round(len(items) * split)
    return items[:val_start], items[val_start:]


def split(data: TrainData, cfg) -> tuple[TrainData, list[Example]]:
    """The training data without the held-out images, and the held-out images (each folder split on its own)."""
    if not cfg.validation_split:
        return data, []
    by_folder: dict = {}
    for ex, n in zip(data.examples, data.repeats):
        by_folder.setdefault(ex.image.parent, []).append((ex, n))
    examples, repeats, held_out = [], [], []
    for folder in sorted(by_folder, key=str):
        pairs = sorted(by_folder[folder], key=lambda p: p[0].image.name)
        train, val = split_paths(pairs, cfg.validation_split, cfg.effective_validation_seed)
        examples += [ex for ex, _ in train]
        repeats += [n for _, n in train]
        held_out += [ex for ex, _ in val]
    if not examples:
        from ..data.dataset import DatasetError

        raise DatasetError(f"validation_split = {cfg.validation_split:g} leaves no training image: lower it or add "
                           "images")
    trained = TrainData(examples, repeats, data.reg_examples, data.triggers, data.tag_frequency)
    return trained, held_out


def timesteps(cfg) -> list[int]:
    """np.linspace(min, max, 6)[1:-1] as int: [200, 400, 600, 800] for the full range."""
    return [int(t) for t in np.linspace(cfg.min_timestep, cfg.max_timestep, NUM_TIMESTEPS + 2, dtype=int)[1:-1]]


@dataclass
class Validator:
    """Scores the held-out images; `history` keeps (step, epoch or None, loss) of every run."""

    examples: list[Example]
    cfg: object
    history: list[tuple[int, int | None, float]] = field(default_factory=list)

    def __post_init__(self):
        by_bucket: dict = {}
        for ex in sorted(self.examples, key=lambda e: str(e.image)):
            by_bucket.setdefault(ex.placement.bucket, []).append(ex)
        size = self.cfg.train_batch_size
        self.batches = [[Entry(ex, False, ex.caption) for ex in items[i:i + size]]
                        for bucket in sorted(by_bucket) for items in [by_bucket[bucket]]
                        for i in range(0, len(items), size)]
        if self.cfg.max_validation_steps:
            self.batches = self.batches[:self.cfg.max_validation_steps]
        self.timesteps = timesteps(self.cfg)

    def __bool__(self) -> bool:
        return bool(self.batches)

    def due(self, step: int, epoch_end: int | None) -> bool:
        """epoch_end: the epoch (1-based) that just ended at this step, else None."""
        cfg = self.cfg
        if not self:
            return False
        if epoch_end is not None and epoch_end % cfg.validate_every_n_epochs == 0:
            return True
        return bool(cfg.validate_every_n_steps and step % cfg.validate_every_n_steps == 0)

    @torch.no_grad()
    def run(self, loss_fn, latent_shape_of) -> float:
        """The mean loss over held-out batches x timesteps. loss_fn(entries, noise, timesteps) -> scalar tensor;
        latent_shape_of(entries) -> the latents' shape (for the noise)."""
        seed = self.cfg.effective_validation_seed
        losses = []
        for b, entries in enumerate(self.batches):
            shape = latent_shape_of(entries)
            for t in self.timesteps:
                gen = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + b * 1009 + t)
                noise = torch.randn(shape, generator=gen)
                losses.append(float(loss_fn(entries, noise, torch.full((shape[0],), t, dtype=torch.long))))
        return sum(losses) / len(losses)

    def best_epoch(self) -> tuple[int, float] | None:
        epochs = [(e, v) for _, e, v in self.history if e is not None]
        return min(epochs, key=lambda p: (p[1], p[0])) if epochs else None


def validate(trainer, board, step: int, epoch_end: int | None, train_average: float) -> float:
    """Scores the held-out images with the trainer's current LoRA (eval mode), logs sd-scripts' tags and a line."""
    c = trainer.components
    c.unet.eval()
    for te in c.text_encoders:
        te.eval()
    try:
        value = trainer.validator.run(trainer.loss_at, lambda entries: trainer._latents(entries).shape)
    finally:
        c.unet.train()
        for te in c.text_encoders:
            te.train(trainer.cfg.train_text_encoder)
    trainer.validator.history.append((step, epoch_end, value))
    board.validation(step, epoch_end, value, train_average)
    print(f"validation step={step}" + (f" epoch={epoch_end}" if epoch_end is not None else "")
          + f" loss={value:.4f}", flush=True)
    return value


def report_best(trainer, step: int) -> None:
    """Names the epoch with the lowest validation loss, and its file (the final LoRA for the last epoch)."""
    best = trainer.validator.best_epoch()
    if not best:
        return
    epoch, value = best
    name = trainer.paths.output_name
    last = epoch == math.ceil(step / trainer.steps_per_epoch)
    file = f"{name}.safetensors" if last else f"{name}-{epoch:06d}.safetensors"
    kept = last or (trainer.paths.model_dir / file).exists()
    trainer.log(f"best epoch: {epoch} (validation loss {value:.4f}): "
                + (file if kept else "its file was not saved (save_every_n_epochs = 1 keeps every epoch)"))
