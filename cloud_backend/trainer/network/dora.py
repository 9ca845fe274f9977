"""DoRA (weight-decomposed LoRA) on top of a LoRA layer, in the form A1111 1.10 and ComfyUI load: `dora_scale`.

What the file means (A1111 1.10.1 `extensions-builtin/Lora/network.py` `NetworkModule.apply_weight_decompose`, and
ComfyUI `comfy/weight_adapter/base.py` `weight_decompose` on its input-axis branch): with V = W + (alpha/rank)·up·down,
the patched weight is V · dora_scale / ||V||, where the norm is taken per *input* channel (over the output and
kernel dimensions), so dora_scale has shape (1, in) for a Linear and (1, in, 1, 1) for a Conv2d. That is the DoRA
paper's column norm (Liu et al. 2024, eq. 2), and LyCORIS' `wd_on_output=False`. peft's own `use_dora` normalises
per *output* row instead, which A1111 1.10 would misapply, so it is not used.

Scaling the columns of V is scaling the layer's input: V·diag(c)·x = V·(c⊙x) for a Linear, and per input channel
for a convolution (zero padding stays zero). So DoRA here is a forward pre-hook on the peft LoRA layer that
multiplies its input by c = dora_scale / ||W + ΔW||; the base and LoRA paths then both see c⊙x. As in the paper
(§4.3) and peft, the norm is treated as a constant in the backward pass: the forward is exact, the gradient cheaper.
The magnitude starts at ||W||, so a fresh DoRA layer changes nothing until it trains.
"""
from __future__ import annotations

import torch

PARAM = "cloudlora_dora_scale"  # on the peft layer; `dora_scale` in the Kohya file
ADAPTER = "default"  # the peft adapter the one LoRA lives under (lora.py adds it; the hook below reads its delta)


def column_norm(weight: torch.Tensor) -> torch.Tensor:
    """||weight|| per input channel, shaped (1, in) or (1, in, 1, 1) like A1111's dora_scale."""
    w = weight.float()
    norm = w.transpose(0, 1).reshape(w.shape[1], -1).norm(dim=1, keepdim=True)
    return norm.reshape(w.shape[1], *[1] * (w.dim() - 1)).transpose(0, 1)


def _scale_input(layer, args):
    x = args[0]
    with torch.no_grad():
        base = layer.get_base_layer().weight
        v = base.float() + layer.get_delta_weight(ADAPTER).float()
        norm = column_norm(v)
    scale = getattr(layer, PARAM) / norm  # gradient reaches dora_scale only (the norm is a constant)
    if x.dim() == 4:  # Conv2d: (B, in, H, W) against (1, in, 1, 1)
        c = scale
    else:  # Linear: (..., in) against (1, in)
        c = scale.reshape(-1)
    return (x * c.to(x.dtype), *args[1:])


def add(layer, magnitude: torch.Tensor | None = None) -> torch.nn.Parameter:
    """Makes a peft LoRA layer a DoRA layer; magnitude: a dora_scale from a file, else ||W|| (no change yet)."""
    if hasattr(layer, PARAM):
        raise ValueError("this layer is already DoRA")
    base = layer.get_base_layer().weight
    value = column_norm(base) if magnitude is None else magnitude.detach().float().reshape(column_norm(base).shape)
    param = torch.nn.Parameter(value.to(base.device).contiguous())
    layer.register_parameter(PARAM, param)
    layer.register_forward_pre_hook(_scale_input)
    return param


def scale_of(layer) -> torch.Tensor | None:
    """The layer's dora_scale, or None for a plain LoRA layer."""
    return getattr(layer, PARAM, None)
