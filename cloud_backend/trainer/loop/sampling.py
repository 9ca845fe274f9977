"""Sample images during training: Kohya's prompt-line syntax (--n negative, --w, --h, --s steps, --l CFG, --d seed,
--g FLUX.1's embedded guidance; parsed in config/prompt_lines.py) rendered with the model being trained, saved as PNG.

The denoising runs under the training's autocast; the VAE decode does not: it runs in the VAE's own dtype (fp32),
so an fp16 GPU (a T4) never overflows the SDXL VAE into NaNs, and images larger than TILE_PX are decoded in
overlapping TILE_PX tiles, so the decode's peak memory is that of a 512 px image whatever the sample size.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from ..config.prompt_lines import (OPTION_RE, PromptError, SamplePrompt, default_prompt,  # noqa: F401
                                   parse_prompt_line, read_prompts)

SAMPLERS = {
    "ddim": "DDIMScheduler", "pndm": "PNDMScheduler", "lms": "LMSDiscreteScheduler", "k_lms": "LMSDiscreteScheduler",
    "euler": "EulerDiscreteScheduler", "k_euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler", "k_euler_a": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler", "dpm_2": "KDPM2DiscreteScheduler", "k_dpm_2": "KDPM2DiscreteScheduler",
    "dpm_2_a": "KDPM2AncestralDiscreteScheduler", "k_dpm_2_a": "KDPM2AncestralDiscreteScheduler",
    "dpmsolver": "DPMSolverMultistepScheduler", "dpmsolver++": "DPMSolverMultistepScheduler",
    "dpmsingle": "DPMSolverSinglestepScheduler",
}


def make_scheduler(sampler: str, base_scheduler):
    import diffusers
    cls = getattr(diffusers, SAMPLERS.get(sampler, "EulerAncestralDiscreteScheduler"))
    # steps_offset=1 as sd-scripts' sampling schedulers (the training DDPM config has 0).
    return cls.from_config(base_scheduler.config, steps_offset=1)


TILE_PX = 512


@contextlib.contextmanager
def tiled(vae, tile_px: int = TILE_PX):
    """diffusers' tiled VAE decode with tile_px tiles (its own default is the config's sample_size: 1024 for SDXL,
    so a 1024 px sample would not be tiled). A VAE without diffusers' tiling attributes decodes whole."""
    names = ("use_tiling", "tile_sample_min_size", "tile_latent_min_size")
    if not all(hasattr(vae, n) for n in names):
        yield
        return
    saved = [getattr(vae, n) for n in names]
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size = True, tile_px, tile_px // factor
    try:
        yield
    finally:
        for n, v in zip(names, saved):
            setattr(vae, n, v)


@torch.no_grad()
def decode(pipeline, latents: torch.Tensor, tile_px: int = TILE_PX):
    """Latents from the pipeline (output_type="latent") -> a PIL image, as the pipeline would decode them, but in
    the VAE's dtype without autocast, tiled above tile_px."""
    from ..data.encode import latent_scale

    vae = pipeline.vae
    scale, shift = latent_scale(vae)
    z = latents.to(vae.device, vae.dtype) / scale + shift
    with torch.autocast(z.device.type, enabled=False), tiled(vae, tile_px):
        image = vae.decode(z).sample
    return pipeline.image_processor.postprocess(image.float(), output_type="pil")[0]


@torch.no_grad()
def render(pipeline, prompts: list[SamplePrompt], out_dir: Path, stem: str, default_size: tuple[int, int],
           seed: int, device, autocast_dtype=None) -> list[Path]:
    """Renders each prompt; files are named <stem>_<index>.png. Restores the model's train mode afterwards."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    unet = pipeline.unet
    was_training = unet.training
    unet.eval()
    rng_state = torch.random.get_rng_state()  # sampling must not change the training RNG stream
    try:
        for i, sp in enumerate(prompts):
            w = (sp.width or default_size[0]) // 8 * 8
            h = (sp.height or default_size[1]) // 8 * 8
            gen = torch.Generator(device="cpu").manual_seed(sp.seed if sp.seed is not None else seed + i)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                latents = pipeline(prompt=sp.prompt, negative_prompt=sp.negative or None, width=w, height=h,
                                   num_inference_steps=sp.steps, guidance_scale=sp.cfg_scale, generator=gen,
                                   output_type="latent").images
            image = decode(pipeline, latents)
            path = out_dir / f"{stem}_{i:02d}.png"
            image.save(path)
            paths.append(path)
    finally:
        torch.random.set_rng_state(rng_state)
        unet.train(was_training)
    return paths


INDEX = "index.json"


def label(paths: list[Path], prompts: list[SamplePrompt], *, seed: int, epoch: int, step: int,
          sampler: str) -> list[dict]:
    """Writes what each sample is (epoch, step, prompt, seed) into its PNG's text chunks (A1111's "parameters", so
    PNG Info reads it, and a "cloudlora" JSON chunk) and adds it to samples/index.json, which the job panel labels
    its gallery from. Returns the index entries."""
    import json
    import os

    from PIL import Image, PngImagePlugin

    entries = []
    for i, (path, sp) in enumerate(zip(paths, prompts)):
        used_seed = sp.seed if sp.seed is not None else seed + i  # as render() seeds it
        with Image.open(path) as im:
            im.load()
            w, h = im.size
            image = im.copy()
        entry = {"file": path.name, "epoch": epoch, "step": step, "prompt": sp.prompt, "negative": sp.negative,
                 "seed": used_seed, "steps": sp.steps, "cfg_scale": sp.cfg_scale, "sampler": sampler,
                 "width": w, "height": h}
        info = PngImagePlugin.PngInfo()
        params = sp.prompt + (f"\nNegative prompt: {sp.negative}" if sp.negative else "")
        params += (f"\nSteps: {sp.steps}, Sampler: {sampler}, CFG scale: {sp.cfg_scale:g}, Seed: {used_seed}, "
                   f"Size: {w}x{h}, Epoch: {epoch}, Step: {step}")
        info.add_text("parameters", params)
        info.add_text("cloudlora", json.dumps(entry))
        image.save(path, pnginfo=info)
        entries.append(entry)
    index_path = paths[0].parent / INDEX if paths else None
    if index_path is not None:
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            index = []
        names = {e["file"] for e in entries}
        index = [e for e in index if isinstance(e, dict) and e.get("file") not in names] + entries
        tmp = index_path.with_name(INDEX + ".tmp")
        tmp.write_text(json.dumps(index, indent=1), encoding="utf-8")
        os.replace(tmp, index_path)  # the panel reads it while the trainer writes: never half a file
    return entries
