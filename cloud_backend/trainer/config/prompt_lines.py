"""Kohya's sample prompt lines (--n negative, --w, --h, --s steps, --l CFG, --d seed, --g FLUX.1's embedded
guidance) and the sample_prompts value
(a file name or the lines themselves). Pure Python: the trainer renders them, the WebUI's epoch grid reuses them."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

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


_OPTIONS = {"n": ("negative", str), "w": ("width", int), "h": ("height", int), "s": ("steps", int),
            "l": ("cfg_scale", float), "d": ("seed", int), "g": ("guidance", float)}  # flag -> (field, type)


def parse_prompt_line(line: str) -> SamplePrompt:
    """'a cat --n blurry --w 512 --h 768 --s 28 --l 6.5 --d 7' -> SamplePrompt. Raises PromptError."""
    parts = OPTION_RE.split(" " + line.strip())
    sp = SamplePrompt(prompt=parts[0].strip())
    for flag, value in zip(parts[1::2], parts[2::2]):
        value = value.strip()
        attr, kind = _OPTIONS[flag]
        try:
            setattr(sp, attr, kind(value))
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


def default_prompt(triggers: list[str], captions: list[str], seed: int, fallback: str,
                   steps: int = 20) -> SamplePrompt:
    """The sample prompt of a run whose config has no sample_prompts: the trigger word(s) plus one of the dataset's
    captions, picked by the seed (so every epoch's sample shows the same prompt and the epochs compare), and the
    seed fixed for the same reason. `fallback` (the LoRA's name) stands in when there is no trigger and no caption."""
    import random

    trigger = ", ".join(t for t in triggers if t)
    pool = sorted({c.strip() for c in captions if c and c.strip()})
    caption = random.Random(seed).choice(pool) if pool else ""
    if trigger and caption:
        # A caption that starts with the trigger already (Kohya's usual "sks, a photo of ...") is not doubled.
        first = caption.split(",", 1)[0].strip()
        text = caption if first.lower() in {t.strip().lower() for t in triggers} else f"{trigger}, {caption}"
    else:
        text = trigger or caption or fallback
    return SamplePrompt(text, steps=steps, seed=seed)
