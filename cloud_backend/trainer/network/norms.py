"""GroupNorm and LayerNorm of the frozen models in the compute dtype under autocast.

CUDA's autocast runs group_norm and layer_norm in fp32: each call casts its bf16 input, weight and bias up, returns
fp32, and the next matmul or convolution casts it back; the backward pass does the same again. The bf16 kernels
accumulate their statistics in fp32 themselves, so running them on the bf16 input and weights gives the same
normalisation up to the final rounding to bf16 that the next op did anyway (the exactness test compares the loss).
A norm becomes one of these by a class swap; without autocast, or with weights in another dtype, it is untouched.
(CPU autocast already runs both in bf16.)
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

_AUTOCAST_KEYS = {}


def _no_autocast(device_type: str):
    """Leaves autocast out of the ops inside (cheaper than `torch.autocast(enabled=False)`, which costs tens of
    microseconds a call: this runs about 600 times per SDXL step)."""
    keys = _AUTOCAST_KEYS.get(device_type)
    if keys is None:
        try:
            name = {"cuda": "AutocastCUDA", "cpu": "AutocastCPU"}[device_type]
            keys = torch._C.DispatchKeySet(getattr(torch._C.DispatchKey, name))
        except (KeyError, AttributeError):
            keys = False
        _AUTOCAST_KEYS[device_type] = keys
    if keys is False or not hasattr(torch._C, "_ExcludeDispatchKeyGuard"):
        return torch.autocast(device_type, enabled=False)
    return torch._C._ExcludeDispatchKeyGuard(keys)


def _autocast_dtype(x: torch.Tensor, weight) -> torch.dtype | None:
    dev = x.device.type
    if not torch.is_autocast_enabled(dev):
        return None
    dtype = torch.get_autocast_dtype(dev)
    return dtype if weight is None or weight.dtype == dtype else None


class ComputeDtypeGroupNorm(torch.nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _autocast_dtype(x, self.weight)
        if dtype is None:
            return super().forward(x)
        with _no_autocast(x.device.type):
            return F.group_norm(x.to(dtype), self.num_groups, self.weight, self.bias, self.eps)


class ComputeDtypeLayerNorm(torch.nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _autocast_dtype(x, self.weight)
        if dtype is None:
            return super().forward(x)
        with _no_autocast(x.device.type):
            return F.layer_norm(x.to(dtype), self.normalized_shape, self.weight, self.bias, self.eps)


_SWAPS = {torch.nn.GroupNorm: ComputeDtypeGroupNorm, torch.nn.LayerNorm: ComputeDtypeLayerNorm}
_BACK = {v: k for k, v in _SWAPS.items()}


def keep_in_compute_dtype(model: torch.nn.Module) -> int:
    """Swaps the model's plain GroupNorm/LayerNorm modules (exact classes only); returns how many."""
    n = 0
    for module in model.modules():
        new = _SWAPS.get(type(module))
        if new is not None:
            module.__class__ = new
            n += 1
    return n


def restore(model: torch.nn.Module) -> None:
    for module in model.modules():
        old = _BACK.get(type(module))
        if old is not None:
            module.__class__ = old


