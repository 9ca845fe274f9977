"""Masked loss as sd-scripts documents it: the images' transparency (alpha_mask) or mask images
(conditioning_data_dir) weight the loss per latent pixel; black / transparent parts teach nothing."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from cloudlora_backend.trainer.config import train_config as config
from cloudlora_backend.trainer.data import masks
from cloudlora_backend.trainer.loop.train import RunPaths, Trainer

from .train_helpers import SMALL, failure, make_dataset, make_job, run_entrypoint
from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test


def _rgba(path, alpha_left: int, alpha_right: int):
    """64x64 picture whose left half has one alpha and right half another."""
    im = Image.new("RGBA", (64, 64), (200, 80, 40, alpha_left))
    im.paste(Image.new("RGBA", (32, 64), (40, 80, 200, alpha_right)), (32, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def test_alpha_and_mask_images_become_latent_masks_like_sd_scripts(tmp_path):
    from cloudlora_backend.trainer.data import dataset as data_mod

    root = tmp_path / "data"
    _rgba(root / "5_sks" / "a.png", 255, 0)
    Image.new("L", (64, 64), 127).save(root / "5_sks" / "b.png")  # no alpha: all trained
    cfg = config.parse(SMALL + "alpha_mask = true\n", "sd15")
    by_name = {ex.image.name: ex for ex in data_mod.build(root, cfg).examples}
    a = masks.load(by_name["a.png"], False, cfg)
    assert a.shape == (8, 8)  # the latent size of the 64 px bucket
    assert torch.allclose(a[:, :4], torch.ones(8, 4)) and torch.allclose(a[:, 4:], torch.zeros(8, 4))
    assert torch.allclose(masks.load(by_name["a.png"], True, cfg)[:, :4], torch.zeros(8, 4))  # flipped with the image
    assert torch.allclose(masks.load(by_name["b.png"], False, cfg), torch.ones(8, 8))
    (root / "5_sks" / "mask").mkdir()
    Image.new("RGB", (64, 64), (127, 0, 255)).save(root / "5_sks" / "mask" / "a.png")  # the R channel counts
    cfg = config.parse(SMALL + 'masked_loss = true\nconditioning_data_dir = "mask"\n', "sd15")
    data = data_mod.build(root, cfg)
    with pytest.raises(data_mod.DatasetError, match=r"b\.png.*5_sks/mask/b\.png"):
        masks.check(data.examples, cfg)
    grey = masks.load(next(ex for ex in data.examples if ex.image.name == "a.png"), False, cfg)
    assert torch.allclose(grey, torch.full((8, 8), 127 / 255), atol=1e-6)


def test_a_fully_masked_image_contributes_no_loss_and_a_half_masked_one_about_half(tmp_path, tiny_sd15_path):
    root = tmp_path / "data"
    _rgba(root / "5_sks" / "a.png", 0, 0)
    _rgba(root / "5_sks" / "b.png", 255, 0)
    _rgba(root / "5_sks" / "c.png", 255, 255)
    cfg = config.parse(SMALL + "alpha_mask = true\nnetwork_dim = 2\nmin_snr_gamma = 0\n", "sd15")
    trainer = Trainer(cfg, RunPaths(model=tiny_sd15_path, dataset=root, model_dir=tmp_path / "m",
                                    tensorboard=tmp_path / "tb", checkpoints=tmp_path / "ck", cache=tmp_path / "c"),
                      log=lambda m: None)
    trainer.setup()
    from cloudlora_backend.trainer.data.dataset import Entry

    entries = {ex.image.name: [Entry(ex, False, ex.caption)] for ex in trainer.data.examples}
    g = torch.Generator().manual_seed(0)
    noise, t = torch.randn(1, 4, 8, 8, generator=g), torch.tensor([500])
    with torch.no_grad():
        losses = {name: float(trainer.loss_at(e, noise, t)) for name, e in entries.items()}
    assert losses["a.png"] == 0.0
    assert 0.2 * losses["c.png"] < losses["b.png"] < 0.8 * losses["c.png"]


def test_masked_loss_without_a_mask_source_is_a_config_error_and_a_missing_mask_fails_the_job_early(
        tmp_path, tiny_sd15_path):
    errors = config.check("masked_loss = true\n", "sd15").errors
    assert len(errors) == 1 and "alpha_mask = true" in errors[0] and "conditioning_data_dir" in errors[0]
    dataset = make_dataset(tmp_path / "data", [(64, 64)] * 2)
    root = make_job(tmp_path / "job", tiny_sd15_path, dataset,
                    SMALL + 'masked_loss = true\nconditioning_data_dir = "mask"\n')
    assert run_entrypoint(root) == 1
    assert "no mask image" in failure(root) and "5_sks/mask/00.png" in failure(root)
