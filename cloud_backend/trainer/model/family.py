"""Which model family (SD 1.5, SD 2, SDXL, FLUX.1) a checkpoint belongs to, from its safetensors header alone (pure
Python, no torch).

Never loads a tensor: a safetensors file starts with an 8-byte little-endian header length and a JSON header that
lists every tensor's name, dtype and shape. Detection goes by KEY NAMES first (so tiny test models with the real
layer layout but tiny widths detect as their family), then by shapes as a tiebreaker (UNet-only files).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Mapping

FAMILIES = ("sd15", "sd2", "sdxl", "flux", "unknown")
# A header larger than this is not a real safetensors header (the biggest real ones are a few MB).
MAX_HEADER_BYTES = 100 << 20


class NotSafetensorsError(ValueError):
    """The file is not a safetensors file (or is truncated); the message names the file."""


def read_safetensors_header(path: Path | str) -> dict:
    """The JSON header of a .safetensors file: {tensor name: {"dtype", "shape", "data_offsets"}, "__metadata__"?}.

    Reads 8 bytes plus the header; never the tensors.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise NotSafetensorsError(f"{path} is not a safetensors file: it is only {size} bytes long.")
            (length,) = struct.unpack("<Q", head)
            if length < 2 or length > MAX_HEADER_BYTES or 8 + length > size:
                raise NotSafetensorsError(
                    f"{path} is not a safetensors file: its first 8 bytes do not give a plausible header length"
                    + (" (it looks like a pickle/.ckpt file)." if head[:2] in (b"\x80\x02", b"PK") else ".")
                )
            raw = f.read(length)
    except OSError as err:
        raise NotSafetensorsError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NotSafetensorsError(f"{path} is not a safetensors file: its header is not JSON ({err}).") from err
    if not isinstance(header, dict):
        raise NotSafetensorsError(f"{path} is not a safetensors file: its header is not a JSON object.")
    return header


def _shapes(header_or_keys: Mapping) -> dict[str, tuple[int, ...]]:
    """{key: shape} from a safetensors header or an already-made {key: shape} mapping."""
    out: dict[str, tuple[int, ...]] = {}
    for key, value in header_or_keys.items():
        if key == "__metadata__":
            continue
        if isinstance(value, Mapping):
            shape = value.get("shape", ())
        elif isinstance(value, (list, tuple)):
            shape = value
        else:
            shape = getattr(value, "shape", ())  # a tensor/array, if a caller passes a state dict
        out[key] = tuple(int(s) for s in shape)
    return out


def _has_prefix(keys, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


_CROSS_ATTN_WIDTH = {768: "sd15", 1024: "sd2", 2048: "sdxl"}


def _from_cross_attention(shapes: dict[str, tuple[int, ...]]) -> str:
    """UNet-only files: the context width that the cross-attention keys project from."""
    for key, shape in shapes.items():
        if key.endswith("attn2.to_k.weight") and len(shape) == 2:
            return _CROSS_ATTN_WIDTH.get(shape[1], "unknown")
    return "unknown"


def detect_family(header_or_keys: Mapping) -> str:
    """"sd15" | "sd2" | "sdxl" | "flux" | "unknown" from a safetensors header or {key: shape}.

    A1111 single-file layout (REFERENCE §2): SD1's text encoder is `cond_stage_model.transformer.text_model.`,
    SD2's is OpenCLIP under `cond_stage_model.model.`, SDXL has `conditioner.embedders.1.model.` (OpenCLIP bigG).
    """
    shapes = _shapes(header_or_keys)
    keys = shapes.keys()
    from .flux_keys import is_flux

    if is_flux(shapes):  # BFL's double_blocks (bare or under model.diffusion_model.) or diffusers' Flux names
        return "flux"
    if _has_prefix(keys, "conditioner.embedders.1.model.") or _has_prefix(keys, "conditioner.embedders.0.transformer."):
        return "sdxl"
    if _has_prefix(keys, "conditioner.embedders.0.model."):
        return "unknown"  # the SDXL refiner: OpenCLIP only; not a base model to train a LoRA on
    if _has_prefix(keys, "cond_stage_model.model.transformer.") or _has_prefix(keys, "cond_stage_model.model."):
        return "sd2"
    if _has_prefix(keys, "cond_stage_model.transformer."):
        return "sd15"
    # No text encoder in the file: the UNet decides. SDXL's UNet has the text-time label embedding.
    if _has_prefix(keys, "model.diffusion_model.label_emb.") or _has_prefix(keys, "add_embedding."):
        return "sdxl"
    if _has_prefix(keys, "model.diffusion_model.") or any(k.endswith("attn2.to_k.weight") for k in keys):
        return _from_cross_attention(shapes)
    # diffusers text encoders saved alone, for completeness
    if _has_prefix(keys, "text_model.") and _has_prefix(keys, "text_projection."):
        return "unknown"
    return "unknown"


def detect_prediction(header: Mapping) -> tuple[bool, bool]:
    """(v-prediction, zero terminal SNR) as a checkpoint declares them: the empty `v_pred` / `ztsnr` tensors that
    NoobAI-style SDXL v-prediction checkpoints carry (read by A1111 1.10, Forge and ComfyUI's model_detection), or
    ModelSpec metadata `modelspec.prediction_type = "v"`. Neither present: (False, False)."""
    meta = header.get("__metadata__") or {}
    v_pred = "v_pred" in header or str(meta.get("modelspec.prediction_type", "")).lower() in ("v", "v_prediction")
    return v_pred, "ztsnr" in header


def detect_lora(header: Mapping) -> tuple[str | None, str]:
    """(family or None, kind) of a LoRA file from its header alone. kind: "kohya" (lora_down/lora_up: LoRA, LoCon,
    DoRA), "loha", "lokr", "diffusers" (PEFT lora_A/lora_B names) or "unknown". The family comes from sd-scripts'
    key names (SDXL uses lora_te1_/lora_te2_ and the LDM block names), else ss_base_model_version."""
    keys = [k for k in header if k != "__metadata__"]
    parts = {k.partition(".")[2] for k in keys}
    if any(p.startswith("hada_") for p in parts):
        kind = "loha"
    elif any(p.startswith("lokr_") for p in parts):
        kind = "lokr"
    elif "lora_down.weight" in parts and "lora_up.weight" in parts:
        kind = "kohya"
    elif any("lora_A" in k or "lora.down" in k for k in keys):
        kind = "diffusers"
    else:
        kind = "unknown"
    if any(k.startswith(("lora_te1_", "lora_te2_", "lora_unet_input_blocks_", "lora_unet_middle_block_",
                         "lora_unet_output_blocks_")) for k in keys):
        return "sdxl", kind
    if any(k.startswith(("lora_te_", "lora_unet_down_blocks_", "lora_unet_mid_block_", "lora_unet_up_blocks_"))
           for k in keys):
        return "sd15", kind
    version = str((header.get("__metadata__") or {}).get("ss_base_model_version", ""))
    return ("sdxl" if version.startswith("sdxl") else "sd15" if version.startswith("sd_v1") else None), kind


def detect_diffusers_folder(folder: Path | str) -> str:
    """A diffusers-format model folder: from model_index.json and unet/config.json (no weights read)."""
    folder = Path(folder)
    index = _read_json(folder / "model_index.json")
    cls = str(index.get("_class_name", ""))
    if cls.startswith("Flux"):
        return "flux"
    if "XL" in cls or (folder / "text_encoder_2").is_dir():
        return "sdxl"
    unet = _read_json(folder / "unet" / "config.json")
    if unet.get("addition_embed_type") == "text_time":
        return "sdxl"
    width = unet.get("cross_attention_dim")
    if isinstance(width, list):
        width = width[0] if width else None
    if width in _CROSS_ATTN_WIDTH:
        return _CROSS_ATTN_WIDTH[width]
    # Tiny models: the text encoder tells CLIP-L (quick_gelu, SD1) from OpenCLIP-H (gelu, SD2).
    te = _read_json(folder / "text_encoder" / "config.json")
    if te:
        return "sd2" if te.get("hidden_act") == "gelu" else "sd15"
    return "unknown"


def detect_path(path: Path | str) -> str:
    """A .safetensors file (header only) or a diffusers folder. Raises NotSafetensorsError for other files."""
    path = Path(path)
    if path.is_dir():
        return detect_diffusers_folder(path)
    return detect_family(read_safetensors_header(path))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
