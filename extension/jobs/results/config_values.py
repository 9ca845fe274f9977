"""Values read from a job's Kohya config the way sd-scripts reads them: the flattened tables, resolution and batch.

Below the estimate, the calibration and the FLUX.1 checks, which all read them.
"""
from __future__ import annotations

import math

BASE_PIXELS = {"sd15": 512 * 512, "sd2": 768 * 768, "sdxl": 1024 * 1024, "flux": 1024 * 1024}


def flatten(text_or_dict) -> dict:
    """sd-scripts flattens every table into one namespace."""
    if isinstance(text_or_dict, str):
        import tomlkit

        data = tomlkit.parse(text_or_dict).unwrap()
    else:
        data = dict(text_or_dict)
    out: dict = {}

    def walk(d):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v)
            else:
                out[k] = v

    walk(data)
    return out


def resolution_of(config: dict, family: str) -> tuple[int, int]:
    """(W, H) of a flattened config; the trainer's family default when the config leaves it out."""
    if config.get("resolution") in (None, ""):
        from cloudlora_backend.trainer.config.schema import defaults_for

        default = defaults_for(family if family in ("sd15", "sdxl", "flux") else None)["resolution"]
        return parse_resolution(default, family)
    return parse_resolution(config.get("resolution"), family)


def batch_of(config: dict, family: str = "sd15") -> int:
    value = config.get("train_batch_size")
    if value in (None, ""):
        from cloudlora_backend.trainer.config.schema import defaults_for

        value = defaults_for(family if family in ("sd15", "sdxl", "flux") else None)["train_batch_size"]
    return max(1, int(value or 1))


def parse_resolution(value, family: str) -> tuple[int, int]:
    """(W, H) of a resolution value (512, [768, 512], "1024,768", "1024x768"); the family's base when unreadable."""
    default = int(math.sqrt(BASE_PIXELS.get(family, 512 * 512)))
    if value in (None, ""):
        return default, default
    if isinstance(value, (int, float)):
        return int(value), int(value)
    if isinstance(value, (list, tuple)) and value:
        return int(value[0]), int(value[-1])
    parts = [p for p in str(value).replace("x", ",").split(",") if p.strip()]
    try:
        nums = [int(float(p)) for p in parts]
    except ValueError:
        return default, default
    return (nums[0], nums[-1]) if nums else (default, default)
