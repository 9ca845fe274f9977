"""What the loop computes: the loss falls on a memorisation task; cached latents give the very same loss."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cloudlora_backend.trainer.config import train_config as config
from cloudlora_backend.trainer.data import dataset as data
from cloudlora_backend.trainer.loop.train import RunPaths, Trainer

from .train_helpers import SMALL, make_dataset, tensorboard_tags
from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test




def _trainer(tmp_path: Path, model: Path, dataset: Path, toml: str, family: str = "sd15") -> Trainer:
    cfg = config.parse(SMALL + toml, family)
    paths = RunPaths(model=model, dataset=dataset, model_dir=tmp_path / "model", tensorboard=tmp_path / "tb",
                     checkpoints=tmp_path / "ckpt", cache=tmp_path / "cache", output_name="mem")
    t = Trainer(cfg, paths, log=lambda msg: None)
    t.setup()
    return t


def _eval_loss(t: Trainer, batch, indices=range(1000, 1008)) -> float:
    with torch.no_grad():
        return sum(float(t.loss(batch, i)) for i in indices) / len(indices)


def test_the_loss_falls_when_the_lora_memorises_one_image(tmp_path, tiny_sd15_path):
    ds = make_dataset(tmp_path / "ds", [(64, 64)], folder="1_sks")
    t = _trainer(tmp_path, tiny_sd15_path, ds,
                 'network_dim = 8\nnetwork_alpha = 8\nlearning_rate = 5e-3\nunet_lr = 5e-3\ntext_encoder_lr = 5e-3\n'
                 'lr_scheduler = "constant"\nlr_warmup_steps = 0\nmin_snr_gamma = 0\nmax_train_steps = 40\n'
                 'train_batch_size = 1\nsave_every_n_epochs = 15\nsample_every_n_epochs = 0\n')  # 40 epochs: no samples
    batch = data.epoch_batches(t.data, t.cfg, 1, 1)[0]
    before = _eval_loss(t, batch)
    result = t.run()
    after = _eval_loss(t, batch)
    assert result.steps == 40 and len(result.losses) == 40
    # one image, one repeat, batch 1: every step is an epoch, so intermediate files at epochs 15 and 30
    assert sorted(p.name for p in (tmp_path / "model").glob("*.safetensors")) == [
        "mem-000015.safetensors", "mem-000030.safetensors", "mem.safetensors"]
    assert after < 0.7 * before, f"held-out loss {before:.4f} -> {after:.4f}"
    assert "loss/epoch_average" in tensorboard_tags(tmp_path / "tb")
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < first, f"training loss {first:.4f} -> {last:.4f}"


def test_cached_latents_in_memory_or_on_disk_give_the_same_loss_as_encoding_every_step(tmp_path, tiny_sd15_path):
    ds = make_dataset(tmp_path / "ds", [(64, 64), (128, 64), (64, 64)])
    before = sorted(p.name for p in (ds / "5_sks").iterdir())
    plain = _trainer(tmp_path / "a", tiny_sd15_path, ds, "cache_latents = false\nflip_aug = true\nseed = 3\n")
    cached = _trainer(tmp_path / "b", tiny_sd15_path, ds,
                      "cache_latents = true\ncache_latents_to_disk = true\nflip_aug = true\nseed = 3\n")
    assert plain.latents is None and cached.latents is not None
    batches = data.epoch_batches(plain.data, plain.cfg, 1, plain.cfg.train_batch_size)
    assert any(e.flip for b in batches for e in b)  # flipped latents are cached too
    for i, batch in enumerate(batches[:4]):
        a, b = _eval_loss(plain, batch, [i]), _eval_loss(cached, batch, [i])
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    files = list((tmp_path / "b" / "cache" / "latents").glob("*.safetensors"))
    assert len(files) == 3 * 2  # three images, plain and flipped, in the job's cache folder
    assert sorted(p.name for p in (ds / "5_sks").iterdir()) == before  # nothing written into the dataset


def test_cached_text_encoder_outputs_give_the_same_loss_when_the_encoders_are_frozen(tmp_path, tiny_sd15_path):
    ds = make_dataset(tmp_path / "ds", [(64, 64), (64, 64)])
    frozen = "network_train_unet_only = true\nclip_skip = 2\n"
    plain = _trainer(tmp_path / "a", tiny_sd15_path, ds, frozen + "cache_text_encoder_outputs = false\n")
    cached = _trainer(tmp_path / "b", tiny_sd15_path, ds, frozen + "cache_text_encoder_outputs = true\n")
    assert plain.text_cache is None and cached.text_cache is not None
    assert len(cached.text_cache.memory) == 2  # one entry per distinct caption
    for i, batch in enumerate(data.epoch_batches(plain.data, plain.cfg, 1, plain.cfg.train_batch_size)[:3]):
        assert _eval_loss(plain, batch, [i]) == pytest.approx(_eval_loss(cached, batch, [i]), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("precision,dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_the_mixed_precision_path_keeps_lora_weights_fp32_on_a_half_base_and_saves_the_requested_precision(
        precision, dtype, tmp_path, tiny_sdxl_path):
    """Runs the GPU code path (autocast, frozen weights in half precision, GradScaler for fp16) on CPU."""
    from safetensors import safe_open

    ds = make_dataset(tmp_path / "ds", [(64, 64), (64, 64)])
    cfg = config.parse(SMALL + f'mixed_precision = "{precision}"\nmax_train_steps = 2\nsave_precision = "{precision}"\n'
                       'sample_every_n_steps = 2\nsample_prompts = "sks --s 2"\nnetwork_dim = 4\n', "sdxl")
    paths = RunPaths(model=tiny_sdxl_path, dataset=ds, model_dir=tmp_path / "model", tensorboard=tmp_path / "tb",
                     checkpoints=tmp_path / "ckpt", cache=tmp_path / "cache", output_name="mp")
    t = Trainer(cfg, paths, log=lambda m: None, cpu_autocast=True)
    t.setup()
    assert t.autocast_dtype == dtype and (t.scaler is not None) == (precision == "fp16")
    assert all(p.dtype == torch.float32 for p in t.params.values())
    frozen = [p for p in t.components.unet.parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == dtype for p in frozen)
    result = t.run()
    assert result.steps == 2 and all(np.isfinite(result.losses))
    with safe_open(str(result.lora), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {dtype}
    assert (tmp_path / "model" / "samples" / "000002_00.png").is_file()
