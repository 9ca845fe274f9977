"""The noise schedule: zero terminal SNR exactly as sd-scripts rescales it, v-prediction and ZTSNR taken from a
NoobAI-style checkpoint's own keys, and multi-resolution noise."""
from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cloudlora_backend.trainer.loop import noise
from cloudlora_backend.trainer.model.load import NOISE_SCHEDULE, load_components

from .train_helpers import SMALL, failure, make_dataset, make_job, run_entrypoint
from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test


def sd_scripts_fix_noise_scheduler_betas_for_zero_terminal_snr(scheduler):
    """sd-scripts library/custom_train_functions.py, transcribed line for line."""
    def enforce_zero_terminal_snr(betas):
        alphas = 1 - betas
        alphas_bar = alphas.cumprod(0)
        alphas_bar_sqrt = alphas_bar.sqrt()
        alphas_bar_sqrt_0 = alphas_bar_sqrt[0].clone()
        alphas_bar_sqrt_T = alphas_bar_sqrt[-1].clone()
        alphas_bar_sqrt -= alphas_bar_sqrt_T
        alphas_bar_sqrt *= alphas_bar_sqrt_0 / (alphas_bar_sqrt_0 - alphas_bar_sqrt_T)
        alphas_bar = alphas_bar_sqrt**2
        alphas = alphas_bar[1:] / alphas_bar[:-1]
        alphas = torch.cat([alphas_bar[0:1], alphas])
        return 1 - alphas

    betas = enforce_zero_terminal_snr(scheduler.betas)
    scheduler.betas = betas
    scheduler.alphas = 1.0 - betas
    scheduler.alphas_cumprod = torch.cumprod(scheduler.alphas, dim=0)


def test_zero_terminal_snr_changes_the_schedule_exactly_as_sd_scripts_does():
    from diffusers import DDPMScheduler

    plain = noise.training_scheduler("v_prediction", zero_terminal_snr=False)
    ours = noise.training_scheduler("v_prediction", zero_terminal_snr=True)
    reference = DDPMScheduler(**NOISE_SCHEDULE, prediction_type="v_prediction")
    sd_scripts_fix_noise_scheduler_betas_for_zero_terminal_snr(reference)
    for attr in ("betas", "alphas", "alphas_cumprod"):
        torch.testing.assert_close(getattr(ours, attr), getattr(reference, attr), rtol=0, atol=0)
    assert float(ours.alphas_cumprod[-1]) == 0.0 < float(plain.alphas_cumprod[-1])  # the last step is pure noise
    torch.testing.assert_close(ours.alphas_cumprod[0], plain.alphas_cumprod[0])  # the first is unchanged
    # The paper's algorithm as diffusers implements it agrees (a second, independent reference).
    torch.testing.assert_close(ours.alphas_cumprod, DDPMScheduler(**NOISE_SCHEDULE, rescale_betas_zero_snr=True)
                               .alphas_cumprod, rtol=1e-5, atol=1e-7)
    assert ours.config.rescale_betas_zero_snr and ours.config.timestep_spacing == "trailing"  # samplers follow
    t = torch.tensor([0, 500, 999])
    for v_pred in (True, False):  # min-SNR weights stay finite where the SNR is 0
        assert torch.isfinite(noise.snr_weights(ours, t, 5.0, v_pred)).all()


def test_a_checkpoint_that_says_v_pred_and_ztsnr_trains_that_way_and_the_lora_says_so(tmp_path, tiny_sdxl_path,
                                                                                      capsys):
    model = tmp_path / "noob-vpred-tiny.safetensors"
    tensors = load_file(str(tiny_sdxl_path))
    tensors.update({"v_pred": torch.tensor([]), "ztsnr": torch.tensor([])})  # NoobAI's markers
    save_file(tensors, str(model))
    c = load_components(model)
    assert c.prediction_type == "v_prediction" and c.extra["ztsnr"]
    dataset = make_dataset(tmp_path / "data", [(64, 64)])
    root = make_job(tmp_path / "job", model, dataset, SMALL + "max_train_steps = 1\nnetwork_dim = 2\n")
    assert run_entrypoint(root) == 0, failure(root)
    log = capsys.readouterr().out
    assert "is a v-prediction model" in log and "is a zero terminal SNR model" in log
    with safe_open(str(root / "model" / "demo.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["modelspec.prediction_type"] == "v" and meta["ss_zero_terminal_snr"] == "True"


def sd_scripts_pyramid_noise_like(noise_, device, iterations=6, discount=0.4, rand=None, randn=None):
    """sd-scripts library/custom_train_functions.py pyramid_noise_like, transcribed; its two random sources
    (random.random and torch.randn) are parameters, so both sides can draw the same numbers."""
    b, c, w, h = noise_.shape
    u = torch.nn.Upsample(size=(w, h), mode="bilinear").to(device)
    for i in range(iterations):
        r = rand() * 2 + 2
        wn, hn = max(1, int(w / (r**i))), max(1, int(h / (r**i)))
        noise_ += u(randn(b, c, wn, hn).to(device)) * discount**i
        if wn == 1 or hn == 1:
            break
    return noise_ / noise_.std()


def test_multires_noise_is_sd_scripts_pyramid_noise_drawn_from_the_steps_generator():
    base = torch.randn(2, 4, 16, 24, generator=torch.Generator().manual_seed(1))
    ours = noise.pyramid_noise(base, torch.Generator().manual_seed(5), 6, 0.3)
    g = torch.Generator().manual_seed(5)
    reference = sd_scripts_pyramid_noise_like(base.clone(), "cpu", 6, 0.3, rand=lambda: float(torch.rand((), generator=g)),
                                              randn=lambda *shape: torch.randn(shape, generator=g))
    torch.testing.assert_close(ours, reference)
    again = noise.pyramid_noise(base, torch.Generator().manual_seed(5), 6, 0.3)
    torch.testing.assert_close(ours, again)  # from the step's generator: a resumed run draws the same noise
    assert abs(float(ours.std()) - 1.0) < 1e-5 and not torch.allclose(ours, base / base.std())


@pytest.mark.parametrize("extra", ["multires_noise_iterations = 6\nmultires_noise_discount = 0.3\n"])
def test_a_job_with_multires_noise_trains_and_records_it(extra, tmp_path, tiny_sd15_path):
    dataset = make_dataset(tmp_path / "data", [(64, 64)])
    root = make_job(tmp_path / "job", tiny_sd15_path, dataset, SMALL + "max_train_steps = 2\n" + extra)
    assert run_entrypoint(root) == 0, failure(root)
    with safe_open(str(root / "model" / "demo.safetensors"), "pt") as f:
        meta = f.metadata()
    assert (meta["ss_multires_noise_iterations"], meta["ss_multires_noise_discount"]) == ("6", "0.3")
