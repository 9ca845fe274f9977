"""Which mixed precision a run computes in, from the config's mixed_precision and what the device has."""
from __future__ import annotations

import torch


def pick_precision(requested: str, device: torch.device, log, cpu_autocast: bool = False) -> torch.dtype | None:
    """bf16 where the GPU has it, fp16 on older GPUs, fp32 on CPU (mixed precision there is slower, not faster).

    cpu_autocast (tests only): keep bf16 on CPU, so the mixed-precision code path runs without a GPU."""
    if requested == "no":
        return None
    if device.type == "cpu" and cpu_autocast:
        return torch.bfloat16 if requested == "bf16" else torch.float16
    if device.type != "cuda":
        log(f"note: mixed_precision = \"{requested}\" is off on CPU; training in fp32")
        return None
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        log("note: this GPU has no bf16; using fp16 mixed precision instead")
        return torch.float16
    return torch.bfloat16 if requested == "bf16" else torch.float16
