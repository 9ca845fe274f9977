"""Sample images with the FLUX.1 transformer being trained: BFL's Euler flow-matching sampler, as sd-scripts'
library/flux_train_utils.py runs it (get_schedule with the resolution-dependent shift, base 0.5 -> max 1.15 between
256 and 4096 image tokens; embedded guidance --g, default 3.5 for dev; no CFG), decoded by the AE."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from .model import img_ids, pack_latents, unpack_latents

DEFAULT_GUIDANCE = 3.5  # sd-scripts' sample default for FLUX.1-dev


def time_shift(mu: float, sigma: float, t: torch.Tensor) -> torch.Tensor:
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** sigma)


def lin_function(x1: float = 256, y1: float = 0.5, x2: float = 4096, y2: float = 1.15):
    m = (y2 - y1) / (x2 - x1)
    return lambda x: m * x + (y1 - m * x1)


def get_schedule(num_steps: int, image_seq_len: int, shift: bool = True) -> list[float]:
    """Sigmas from 1 to 0 (num_steps + 1 values), shifted towards noise for larger images (FLUX.1-dev)."""
    timesteps = torch.linspace(1, 0, num_steps + 1)
    if shift:
        timesteps = time_shift(lin_function()(image_seq_len), 1.0, timesteps)
    return timesteps.tolist()


@torch.no_grad()
def render(trainer, prompts, out_dir: Path, stem: str, default_size: tuple[int, int], seed: int) -> list[Path]:
    """Renders each SamplePrompt to <stem>_<index>.png; the training RNG stream and train mode are left as found."""
    c, device = trainer.components, trainer.device
    model, ae = c.unet, c.vae
    out_dir.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    rng_state = torch.random.get_rng_state()
    dtype = trainer.autocast_dtype
    paths = []
    try:
        for i, sp in enumerate(prompts):
            w = max(16, (sp.width or default_size[0]) // 16 * 16)
            h = max(16, (sp.height or default_size[1]) // 16 * 16)
            gen = torch.Generator(device="cpu").manual_seed(sp.seed if sp.seed is not None else seed + i)
            noise = torch.randn(1, 16, h // 8, w // 8, generator=gen).to(device)
            img = pack_latents(noise)
            ids = img_ids(1, h // 16, w // 16, device)
            pooled, states, mask = trainer.text_states([sp.prompt])
            txt_ids = torch.zeros(1, states.shape[1], 3, device=device)
            guidance = torch.full((1,), float(getattr(sp, "guidance", None) or DEFAULT_GUIDANCE), device=device)
            sigmas = get_schedule(max(1, sp.steps), img.shape[1], shift=model.params.guidance_embed)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                for s_curr, s_prev in zip(sigmas[:-1], sigmas[1:]):
                    t = torch.full((1,), s_curr, device=device)
                    pred = model(img, ids, states, txt_ids, t, pooled, guidance,
                                 mask if trainer.cfg.apply_t5_attn_mask else None)
                    img = img + (s_prev - s_curr) * pred.float()
            latents = unpack_latents(img, h // 16, w // 16)
            scale, shift = float(ae.config.scaling_factor), float(getattr(ae.config, "shift_factor", 0) or 0)
            pixels = ae.decode((latents / scale + shift).to(ae.device, ae.dtype)).sample
            arr = ((pixels[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu()
            from PIL import Image

            path = out_dir / f"{stem}_{i:02d}.png"
            Image.fromarray(arr.numpy()).save(path)
            paths.append(path)
    finally:
        torch.random.set_rng_state(rng_state)
        model.train(was_training)
    return paths
