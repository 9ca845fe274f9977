"""Sample images during training: Kohya's prompt-line syntax (--n negative, --w, --h, --s steps, --l CFG, --d seed,
--g FLUX.1's embedded guidance)
rendered with the model being trained, saved as PNG."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

OPTION_RE = re.compile(r"\s--(n|w|h|s|l|d|g)\s+")


@dataclass
class SamplePrompt:
    prompt: str
    negative: str = ""
    width: int = 0  # 0 = the training resolution
    height: int = 0
    steps: int = 20
    cfg_scale: float = 7.0
    seed: int | None = None
    guidance: float | None = None  # --g: FLUX.1's embedded guidance (sd-scripts' default 3.5)


class PromptError(ValueError):
    pass


def parse_prompt_line(line: str) -> SamplePrompt:
    """'a cat --n blurry --w 512 --h 768 --s 28 --l 6.5 --d 7' -> SamplePrompt. Raises PromptError."""
    parts = OPTION_RE.split(" " + line.strip())
    sp = SamplePrompt(prompt=parts[0].strip())
    for flag, value in zip(parts[1::2], parts[2::2]):
        value = value.strip()
        try:
            if flag == "n":
                sp.negative = value
            elif flag == "w":
                sp.width = int(value)
            elif flag == "h":
                sp.height = int(value)
            elif flag == "s":
                sp.steps = int(value)
            elif flag == "l":
                sp.cfg_scale = float(value)
            elif flag == "d":
                sp.seed = int(value)
            elif flag == "g":
                sp.guidance = float(value)
        except ValueError as err:
            raise PromptError(f"sample prompt {line!r}: --{flag} {value!r} is not a number") from err
    if not sp.prompt:
        raise PromptError(f"sample prompt {line!r} has no prompt text before its --options")
    return sp


def read_prompts(value: str, search_dirs: list[Path]) -> list[SamplePrompt]:
    """sample_prompts is a file name (looked up as given, then in search_dirs) or the prompt lines themselves."""
    value = (value or "").strip()
    if not value:
        return []
    if "\n" not in value and re.search(r"\.(txt|prompts?)$", value, re.I):
        candidates = [Path(value)] + [d / Path(value).name for d in search_dirs]
        for c in candidates:
            if c.is_file():
                value = c.read_text(encoding="utf-8")
                break
        else:
            raise PromptError(f"sample_prompts file {value!r} was not found (looked in "
                              f"{', '.join(str(d) for d in search_dirs)}); put it in the config folder or write the "
                              "prompt lines in sample_prompts itself")
    lines = [ln for ln in value.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [parse_prompt_line(ln) for ln in lines]


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
                image = pipeline(prompt=sp.prompt, negative_prompt=sp.negative or None, width=w, height=h,
                                 num_inference_steps=sp.steps, guidance_scale=sp.cfg_scale, generator=gen,
                                 output_type="pil").images[0]
            path = out_dir / f"{stem}_{i:02d}.png"
            image.save(path)
            paths.append(path)
    finally:
        torch.random.set_rng_state(rng_state)
        unet.train(was_training)
    return paths
