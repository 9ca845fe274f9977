"""The training noise: the DDPM schedule (optionally rescaled to zero terminal SNR), v-prediction, multi-resolution
(pyramid) noise and min-SNR weights, each as sd-scripts does it.

Sources: sd-scripts `library/custom_train_functions.py` (`fix_noise_scheduler_betas_for_zero_terminal_snr`,
`pyramid_noise_like`, `apply_snr_weight`) and `library/train_util.py` `get_noise_noisy_latents_and_timesteps`
(offset noise first, then pyramid noise). Zero terminal SNR is Lin et al. 2023, "Common Diffusion Noise Schedules
and Sample Steps are Flawed" (arXiv 2305.08891), algorithm 1.

Detected from a checkpoint (model/load.py): NoobAI-style SDXL v-prediction checkpoints carry empty `v_pred` and
`ztsnr` tensors, which A1111 1.10 (`sd_models_config`/`sd_models`), Forge and ComfyUI (`model_detection`) read
the same way.
"""
from __future__ import annotations

import torch


def enforce_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """sd-scripts' enforce_zero_terminal_snr: shift sqrt(alphas_bar) so the last is 0, scale so the first stays."""
    alphas_bar_sqrt = (1 - betas).cumprod(0).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * (first / (first - last))
    alphas_bar = alphas_bar_sqrt ** 2
    alphas = torch.cat([alphas_bar[0:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1 - alphas


def training_scheduler(prediction_type: str = "epsilon", zero_terminal_snr: bool = False):
    """The DDPM training scheduler (REFERENCE §2: scaled_linear 0.00085..0.012, 1000 steps).

    With zero_terminal_snr its betas, alphas and alphas_cumprod are replaced as sd-scripts'
    fix_noise_scheduler_betas_for_zero_terminal_snr does, and the config says so (rescale_betas_zero_snr,
    timestep_spacing "trailing", as the paper recommends for sampling), so samplers built from it follow."""
    from diffusers import DDPMScheduler

    from ..model.load import NOISE_SCHEDULE

    scheduler = DDPMScheduler(**NOISE_SCHEDULE, prediction_type=prediction_type)
    if zero_terminal_snr:
        betas = enforce_zero_terminal_snr(scheduler.betas)
        scheduler.betas = betas
        scheduler.alphas = 1.0 - betas
        scheduler.alphas_cumprod = torch.cumprod(scheduler.alphas, dim=0)
        scheduler.register_to_config(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    return scheduler


def pyramid_noise(noise: torch.Tensor, generator: torch.Generator, iterations: int, discount: float) -> torch.Tensor:
    """sd-scripts' pyramid_noise_like, drawing from `generator` instead of the global RNGs (so a resumed run draws
    the same noise): noise at ever smaller random scales (each 2-4x), upsampled bilinearly, weighted discount**i,
    then rescaled to unit variance."""
    b, c, h, w = noise.shape
    up = torch.nn.Upsample(size=(h, w), mode="bilinear")
    out = noise.clone()
    for i in range(iterations):
        r = float(torch.rand((), generator=generator)) * 2 + 2
        hn, wn = max(1, int(h / (r ** i))), max(1, int(w / (r ** i)))
        out += up(torch.randn((b, c, hn, wn), generator=generator)) * discount ** i
        if hn == 1 or wn == 1:
            break
    return out / out.std()


def snr_weights(scheduler, timesteps: torch.Tensor, gamma: float, v_pred: bool) -> torch.Tensor:
    """Min-SNR-gamma weights (Hang et al. 2023) as sd-scripts' apply_snr_weight: min(snr, gamma) / snr, or
    / (snr + 1) for v-prediction. At the last step of a zero-terminal-SNR schedule snr is 0: the epsilon weight is
    taken at its limit 1 instead of sd-scripts' 0/0 = NaN."""
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas / (1 - alphas)
    clipped = torch.clamp(snr, max=gamma)
    if v_pred:
        return clipped / (snr + 1)
    return torch.where(snr > 0, clipped / snr.clamp(min=1e-20), torch.ones_like(snr))


def configure(trainer) -> None:
    """Sets trainer.v_pred / zero_terminal_snr from the config, or from the checkpoint's v_pred / ztsnr keys (with a
    note in the log), and gives the components the matching training scheduler."""
    cfg, c = trainer.cfg, trainer.components
    if c.family not in ("sd15", "sdxl"):  # FLUX.1 is flow matching: no DDPM schedule (flux/train.py)
        trainer.v_pred = trainer.zero_terminal_snr = False
        return
    trainer.v_pred = bool(cfg.v_parameterization or c.prediction_type == "v_prediction")
    trainer.zero_terminal_snr = bool(cfg.zero_terminal_snr or c.extra.get("ztsnr"))
    for what, on, asked in (("v-prediction", trainer.v_pred, cfg.v_parameterization),
                            ("zero terminal SNR", trainer.zero_terminal_snr, cfg.zero_terminal_snr)):
        if on and not asked:
            trainer.log(f"note: {c.model_name} is a {what} model (its checkpoint says so): training with {what}")
    c.noise_scheduler = training_scheduler("v_prediction" if trainer.v_pred else "epsilon", trainer.zero_terminal_snr)
