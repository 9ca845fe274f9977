"""The training step's fast path: fused LoRA linears (fused_lora.py) and compute-dtype norms (norms.py) on the
models a run trains, with the LoRA working copies marked stale after every optimizer step. `Trainer(fast=False)`
keeps peft's own path (the benchmarks and exactness tests compare the two)."""
from __future__ import annotations

import torch

from . import fused_lora, norms


def apply(components, optimizer, autocast_dtype: torch.dtype | None, log=None) -> list:
    """Fuses every model's plain LoRA linears; under mixed precision also keeps their norms in the compute dtype.
    Returns the WorkingCopies of the fused models."""
    models = [components.unet, *components.text_encoders]
    copies = [c for c in (fused_lora.fuse(m) for m in models) if c is not None]
    n_norms = sum(norms.keep_in_compute_dtype(m) for m in models) if autocast_dtype is not None else 0
    if copies:
        optimizer.register_step_post_hook(lambda *_: [c.mark_stale() for c in copies])
    if log:
        log(f"fast path: {sum(len(c.layers) for c in copies)} fused LoRA linears"
            + (f", {n_norms} norms in {str(autocast_dtype).split('.')[-1]}" if n_norms else ""))
    return copies
