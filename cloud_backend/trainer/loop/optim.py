"""Optimizers and lr schedules by their sd-scripts names: AdamW, AdamW8bit (bitsandbytes, CUDA only), Prodigy,
Adafactor; schedulers through diffusers' get_scheduler, with warmup."""
from __future__ import annotations

import ast

import torch


class OptimizerError(RuntimeError):
    """The chosen optimizer cannot run here; the message says why and what to choose instead."""


def parse_optimizer_args(args: list[str]) -> dict:
    """["weight_decay=0.01", "betas=0.9,0.99"] -> {"weight_decay": 0.01, "betas": (0.9, 0.99)} (sd-scripts' rules)."""
    out = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise OptimizerError(f"optimizer_args entry {arg!r} is not key=value")
        parts = value.split(",")
        try:
            vals = [ast.literal_eval(p.strip()) for p in parts]
        except (ValueError, SyntaxError):
            vals = [p.strip() for p in parts]
        out[key.strip()] = vals[0] if len(vals) == 1 else tuple(vals)
    return out


def build_optimizer(name: str, param_groups: list[dict], lr: float, args: list[str], device: torch.device):
    kwargs = parse_optimizer_args(args)
    if name == "AdamW":
        return torch.optim.AdamW(param_groups, lr=lr, **kwargs)
    if name == "AdamW8bit":
        if device.type != "cuda":
            raise OptimizerError("optimizer_type = \"AdamW8bit\" needs a CUDA GPU (bitsandbytes); this machine has "
                                 "none. Use optimizer_type = \"AdamW\" here.")
        try:
            import bitsandbytes as bnb
        except ImportError as err:
            raise OptimizerError("optimizer_type = \"AdamW8bit\" needs the bitsandbytes package, which is not "
                                 "installed here; use \"AdamW\" or install bitsandbytes.") from err
        return bnb.optim.AdamW8bit(param_groups, lr=lr, **kwargs)
    if name == "Prodigy":
        from prodigyopt import Prodigy
        return Prodigy(param_groups, lr=lr, **kwargs)
    if name == "Adafactor":
        from transformers.optimization import Adafactor
        # sd-scripts' defaults: a fixed lr unless relative_step is asked for.
        kwargs.setdefault("relative_step", False)
        kwargs.setdefault("scale_parameter", False)
        kwargs.setdefault("warmup_init", False)
        return Adafactor(param_groups, lr=None if kwargs["relative_step"] else lr, **kwargs)
    raise OptimizerError(f"optimizer_type {name!r} is not supported")


def build_scheduler(name: str, optimizer, warmup_steps: int, total_steps: int, num_cycles: int = 1,
                    power: float = 1.0):
    if name == "adafactor":
        from transformers.optimization import AdafactorSchedule
        return AdafactorSchedule(optimizer)
    from diffusers.optimization import get_scheduler
    kwargs = {"num_warmup_steps": warmup_steps, "num_training_steps": total_steps}
    if name == "cosine_with_restarts":
        kwargs["num_cycles"] = num_cycles
    if name == "polynomial":
        kwargs["power"] = power
    if name == "constant":
        kwargs.pop("num_warmup_steps")
        kwargs.pop("num_training_steps")
    return get_scheduler(name, optimizer, **kwargs)
