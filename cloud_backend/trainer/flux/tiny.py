"""Tiny random-weight FLUX.1 checkpoints with the real layer layout, in the layouts users have, for tests and smoke runs.

FLUX.1-dev's depth (19 double + 38 single blocks, so the LoRA module set is the real one: 304 modules), CLIP-L's and
T5-XXL's depths (12 and 24 layers) and the AE's four levels, at tiny widths (arch/flux-tiny). Layouts:
- "all-in-one": one file as Forge / ComfyUI save a checkpoint (`model.diffusion_model.`, `text_encoders.clip_l.
  transformer.`, `text_encoders.t5xxl.transformer.`, `vae.`); with fp8=True the transformer's weights are
  float8_e4m3fn, as in Forge's flux1-dev-fp8.safetensors;
- "parts": the transformer alone in BFL's layout (like flux1-dev.safetensors) plus clip_l.safetensors,
  t5xxl.safetensors and ae.safetensors beside it, as sd-scripts and ComfyUI users keep them.
Deterministic: the same seed and torch version give the same tensors.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..model.singlefile import clip_to_ldm, vae_to_ldm
from ..model import flux_keys as K
from .load import ARCH_ROOT, arch_config, flux_params
from .model import FP8, Flux

TINY = "flux-tiny"
LAYOUTS = ("all-in-one", "parts")


def build_tiny_models(seed: int = 0):
    """(transformer, ae, [clip_l, t5]) with random weights from arch/flux-tiny."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        t = arch_config(TINY, "transformer")
        shapes = _tiny_bfl_shapes(t)
        transformer = Flux(flux_params(shapes)[0])
        ae = AutoencoderKL.from_config(AutoencoderKL.load_config(ARCH_ROOT / TINY / "vae"))
        clip = CLIPTextModel(CLIPTextConfig.from_dict(arch_config(TINY, "text_encoder")))
        t5 = T5EncoderModel(T5Config.from_dict(arch_config(TINY, "text_encoder_2")))
    finally:
        torch.random.set_rng_state(state)
    return transformer, ae, [clip, t5]


def _tiny_bfl_shapes(t: dict) -> dict[str, tuple]:
    """The few BFL shapes flux_params reads, from the tiny diffusers-style config."""
    hidden = t["num_attention_heads"] * t["attention_head_dim"]
    shapes = {"img_in.weight": (hidden, t["in_channels"]), "txt_in.weight": (hidden, t["joint_attention_dim"]),
              "vector_in.in_layer.weight": (hidden, t["pooled_projection_dim"]),
              "double_blocks.0.img_attn.norm.query_norm.scale": (t["attention_head_dim"],),
              "double_blocks.0.img_attn.qkv.bias": (3 * hidden,),
              "double_blocks.0.img_mlp.0.weight": (4 * hidden, hidden),
              f"double_blocks.{t['num_layers'] - 1}.img_attn.qkv.weight": (3 * hidden, hidden),
              f"single_blocks.{t['num_single_layers'] - 1}.linear1.weight": (7 * hidden, hidden)}
    if t.get("guidance_embeds"):
        shapes["guidance_in.in_layer.weight"] = (hidden, 256)
    return shapes


def arch_digest() -> str:
    h = hashlib.sha256()
    for path in sorted((ARCH_ROOT / TINY).rglob("*.json")):
        h.update(path.relative_to(ARCH_ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _tensors(sd: dict, dtype: torch.dtype | None) -> dict:
    out = {}
    for k, v in sd.items():
        v = v.detach()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous().clone()  # no shared storage (safetensors refuses tied tensors)
    return out


def part_state_dicts(transformer, ae, encoders) -> dict[str, dict]:
    """Each part's tensors in its distributed key layout, without roots: BFL, HF CLIP, HF T5, LDM AE."""
    clip, t5 = encoders
    ldm_vae = {k[len("first_stage_model."):]: v for k, v in vae_to_ldm(ae.state_dict(), ae.config).items()}
    return {
        "transformer": transformer.state_dict(),
        "clip_l": clip_to_ldm(clip.state_dict(), ""),
        "t5xxl": {k: v for k, v in t5.state_dict().items() if k != "encoder.embed_tokens.weight"},  # tied to shared
        "ae": ldm_vae,
    }


def to_diffusers_transformer(bfl: dict, params) -> dict:
    """BFL transformer tensors -> diffusers FluxTransformer2DModel names (the inverse of load.py's conversion).

    diffusers' own single-file converter assumes FLUX.1's 3072 width, so tiny models need this one."""
    mapping = K.diffusers_to_bfl_map(params.depth, params.depth_single_blocks)
    by_bfl: dict[str, list] = {}
    for d_key, (b_key, pos) in mapping.items():
        by_bfl.setdefault(b_key, []).append((pos, d_key))
    hidden, mlp = params.hidden_size, int(params.hidden_size * params.mlp_ratio)
    out = {}
    for b_key, items in by_bfl.items():
        if b_key not in bfl:
            continue
        t = bfl[b_key]
        if b_key in K.SWAPPED_HALVES:
            scale, shift = t.chunk(2, dim=0)
            t = torch.cat([shift, scale], dim=0)
        items.sort()
        sizes = [hidden] * 3 + [mlp] * (len(items) - 3) if len(items) > 1 else [t.shape[0]]
        for (_pos, d_key), piece in zip(items, t.split(sizes, dim=0)):
            out[d_key] = piece.contiguous()
    return out


def write_diffusers_folder(folder: Path | str, seed: int = 0) -> Path:
    """The tiny model as a diffusers FluxPipeline folder (transformer/, text_encoder/, text_encoder_2/, vae/)."""
    import json
    import shutil

    from diffusers import FluxTransformer2DModel

    folder = Path(folder)
    transformer, ae, (clip, t5) = build_tiny_models(seed)
    diffusers_t = FluxTransformer2DModel.from_config(FluxTransformer2DModel.load_config(ARCH_ROOT / TINY / "transformer"))
    diffusers_t.load_state_dict(to_diffusers_transformer(transformer.state_dict(), transformer.params), strict=True)
    diffusers_t.save_pretrained(folder / "transformer")
    ae.save_pretrained(folder / "vae")
    clip.save_pretrained(folder / "text_encoder")
    t5.save_pretrained(folder / "text_encoder_2")
    shutil.copy(ARCH_ROOT / TINY / "model_index.json", folder / "model_index.json")
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(arch_config(TINY, "scheduler")))
    return folder


def write_tiny(out: Path | str, layout: str = "all-in-one", seed: int = 0, fp8: bool = False) -> dict[str, Path]:
    """Writes a tiny FLUX.1 checkpoint; returns {part: file} (one file for all-in-one, four for parts)."""
    from safetensors.torch import save_file

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sds = part_state_dicts(*build_tiny_models(seed))
    meta = {"cloudlora.tiny": "flux", "cloudlora.seed": str(seed), "cloudlora.arch_digest": arch_digest(),
            "cloudlora.layout": layout + ("-fp8" if fp8 else "")}
    # fp16 on disk like the released files (the fp8 variant stores the transformer's Linear weights as e4m3fn).
    transformer = _tensors(sds["transformer"], torch.float16)
    if fp8:
        transformer = {k: (v.to(FP8) if k.endswith(".weight") else v) for k, v in transformer.items()}
    if layout == "parts":
        files = {"transformer": out}
        _save(save_file, transformer, out, meta)
        for part in K.PARTS[1:]:
            files[part] = out.parent / K.PART_FILES[part]
            _save(save_file, _tensors(sds[part], torch.float16), files[part], meta)
        return files
    tensors = {K.TRANSFORMER_ROOT + k: v for k, v in transformer.items()}
    for part in K.PARTS[1:]:
        tensors.update({K.PART_ROOTS[part] + k: v for k, v in _tensors(sds[part], torch.float16).items()})
    _save(save_file, tensors, out, meta)
    return {part: out for part in K.PARTS}


def _save(save_file, tensors: dict, path: Path, meta: dict) -> None:
    import os

    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def is_current(path: Path | str, layout: str = "all-in-one", seed: int = 0, fp8: bool = False) -> bool:
    from ..model.family import read_safetensors_header

    try:
        meta = read_safetensors_header(path).get("__metadata__", {})
    except (OSError, ValueError):
        return False
    return (meta.get("cloudlora.tiny"), meta.get("cloudlora.seed"), meta.get("cloudlora.arch_digest"),
            meta.get("cloudlora.layout")) == ("flux", str(seed), arch_digest(), layout + ("-fp8" if fp8 else ""))
