"""Full-size random-weight SD 1.5 / SDXL checkpoints in the A1111 single-file layout (fp16, the real key set and
shapes: 2.13 GB and 6.94 GB), written one tensor at a time so that even SDXL never needs its 7 GB in memory.

Two sources of values: `init` builds the real models (diffusers/transformers default init) on a device, GPU if
there is one, and streams their tensors out; `stream` builds them on the meta device (shapes only) and draws each
tensor just before it is written (N(0, 0.02), norm scales 1): for load-time and memory measurements on a machine
with little RAM. Used by bench/model/load_dtype.py and bench/train/gpu_bench.py.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from cloudlora_backend.trainer.model import archs, singlefile

_DTYPES = {torch.float16: "F16", torch.float32: "F32", torch.int64: "I64", torch.bfloat16: "BF16"}


def build_models(family: str, device="meta", dtype=torch.float16, tiny: bool = False):
    """(unet, vae, text_encoders) of the shipped configs, default-initialised on `device` (no values on meta)."""
    folder = archs.arch_dir(family, tiny)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return archs.models_from_configs(folder, family)
    finally:
        torch.set_default_dtype(previous)


def _random_like(key: str, t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    if not t.is_floating_point():
        return torch.arange(t.shape[-1], dtype=t.dtype).expand(t.shape).contiguous()  # position_ids
    if t.ndim == 1 and ("norm" in key or key.split(".")[-2].startswith(("ln", "layer_norm"))) and \
            key.endswith("weight"):
        return torch.ones(t.shape, dtype=torch.float16)
    return (torch.randn(t.shape, generator=g) * 0.02).to(torch.float16)


def write(path: Path | str, family: str, source: str = "stream", device="cpu", seed: int = 0) -> Path:
    """Writes the checkpoint; returns its path. source: "stream" (meta shapes, values drawn per tensor) or "init"
    (the real default init on `device`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    models = build_models(family, "meta" if source == "stream" else device)
    state = singlefile.to_single_file_state_dict(family, *models[:2], models[2])
    keys = sorted(state)
    header, offset = {}, 0
    for k in keys:
        t = state[k]
        dtype = torch.float16 if t.is_floating_point() else t.dtype
        n = t.numel() * torch.tensor([], dtype=dtype).element_size()
        header[k] = {"dtype": _DTYPES[dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"cloudlora.random": f"{family} {source} seed {seed}"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    g = torch.Generator().manual_seed(seed)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for k in keys:
            t = state[k]
            value = _random_like(k, t, g) if t.device.type == "meta" else t.detach()
            value = value.to("cpu", torch.float16 if value.is_floating_point() else value.dtype).contiguous()
            f.write(value.numpy().tobytes())
    tmp.replace(path)
    return path
