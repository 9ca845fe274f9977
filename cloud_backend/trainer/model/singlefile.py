"""Writes diffusers models as one A1111 (LDM/SGM) single-file checkpoint: the inverse of diffusers' from_single_file.

The diffusers package ships no such writer (only repository scripts), so this is ours. Key roots (REFERENCE §2):
UNet `model.diffusion_model.`, VAE `first_stage_model.`, SD1 text encoder `cond_stage_model.transformer.text_model.`,
SDXL `conditioner.embedders.0.transformer.text_model.` (CLIP-L) and `conditioner.embedders.1.model.` (OpenCLIP bigG:
fused attention `in_proj`, transposed `text_projection`). Checked by a round trip through from_single_file.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping

import torch

UNET_ROOT = "model.diffusion_model."
VAE_ROOT = "first_stage_model."
CLIP_ROOT = {"sd15": ["cond_stage_model.transformer."], "sdxl": ["conditioner.embedders.0.transformer."]}
OPENCLIP_ROOT = "conditioner.embedders.1.model."

_UNET_DIRECT = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def unet_block_map(config: Mapping) -> dict[str, str]:
    """{diffusers prefix: LDM prefix} for the UNet's blocks, from its config (any depth, SD1.5 and SDXL layouts).

    LDM numbers the input blocks (layers_per_block + 1) per level: the resnets (each with its attention at .1), then
    the downsampler; output blocks have one more resnet per level and put the upsampler after the attention.
    """
    lpb = int(config["layers_per_block"])
    down_types, up_types = list(config["down_block_types"]), list(config["up_block_types"])
    n = len(down_types)
    out: dict[str, str] = {}
    for i, kind in enumerate(down_types):
        for j in range(lpb):
            index = (lpb + 1) * i + j + 1
            out[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{index}.0."
            if "CrossAttn" in kind:
                out[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{index}.1."
        if i < n - 1:
            out[f"down_blocks.{i}.downsamplers.0.conv."] = f"input_blocks.{(lpb + 1) * (i + 1)}.0.op."
    out["mid_block.resnets.0."] = "middle_block.0."
    out["mid_block.attentions.0."] = "middle_block.1."
    out["mid_block.resnets.1."] = "middle_block.2."
    for i, kind in enumerate(up_types):
        has_attn = "CrossAttn" in kind
        for j in range(lpb + 1):
            index = (lpb + 1) * i + j
            out[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{index}.0."
            if has_attn:
                out[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{index}.1."
        if i < n - 1:
            out[f"up_blocks.{i}.upsamplers.0."] = f"output_blocks.{(lpb + 1) * i + lpb}.{2 if has_attn else 1}."
    return out


def unet_key_to_ldm(key: str, block_map: Mapping[str, str]) -> str:
    """One diffusers UNet key (or module path + ".") in LDM naming, without the root."""
    for hf, sd in _UNET_DIRECT.items():
        if key.startswith(hf):
            return sd + key[len(hf):]
    for hf, sd in block_map.items():
        if key.startswith(hf):
            rest = key[len(hf):]
            if ".resnets." in hf:
                head, _, tail = rest.partition(".")
                rest = f"{_UNET_RESNET.get(head, head)}.{tail}" if tail else _UNET_RESNET.get(head, head)
            return sd + rest
    raise KeyError(f"no LDM name for UNet key {key!r}")


def unet_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    block_map = unet_block_map(config)
    return {UNET_ROOT + unet_key_to_ldm(k, block_map): v for k, v in state_dict.items()}


def _vae_block_map(n_blocks: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for i in range(n_blocks):
        for j in range(2 + 1):  # the decoder has layers_per_block + 1 resnets; extra entries never match
            out[f"encoder.down_blocks.{i}.resnets.{j}."] = f"encoder.down.{i}.block.{j}."
            out[f"decoder.up_blocks.{i}.resnets.{j}."] = f"decoder.up.{n_blocks - 1 - i}.block.{j}."
        out[f"encoder.down_blocks.{i}.downsamplers.0."] = f"encoder.down.{i}.downsample."
        out[f"decoder.up_blocks.{i}.upsamplers.0."] = f"decoder.up.{n_blocks - 1 - i}.upsample."
    for part in ("encoder", "decoder"):
        for k in range(2):
            out[f"{part}.mid_block.resnets.{k}."] = f"{part}.mid.block_{k + 1}."
        out[f"{part}.mid_block.attentions.0."] = f"{part}.mid.attn_1."
    return out


_VAE_ATTN = {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.", "to_out.0.": "proj_out."}


def vae_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    block_map = _vae_block_map(len(config["block_out_channels"]))
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new = key.replace("conv_norm_out.", "norm_out.")
        for hf, sd in block_map.items():
            if new.startswith(hf):
                rest = new[len(hf):]
                if hf.endswith("attentions.0."):
                    for a, b in _VAE_ATTN.items():
                        if rest.startswith(a):
                            rest = b + rest[len(a):]
                            break
                    if value.ndim == 2:  # LDM's attention projections are 1x1 convolutions
                        value = value[:, :, None, None]
                new = sd + rest.replace("conv_shortcut.", "nin_shortcut.")
                break
        out[VAE_ROOT + new] = value
    return out


def clip_to_ldm(state_dict: Mapping[str, torch.Tensor], root: str) -> dict[str, torch.Tensor]:
    """HF CLIPTextModel -> `<root>text_model.…` (transformers >= 5.6 drops the text_model wrapper: put it back)."""
    out = {}
    for key, value in state_dict.items():
        key = key if key.startswith("text_model.") else "text_model." + key
        out[root + key] = value
    pos = out.get(root + "text_model.embeddings.position_embedding.weight")
    if pos is not None and root + "text_model.embeddings.position_ids" not in out:
        # Real checkpoints carry it; transformers no longer saves the (non-persistent) buffer.
        out[root + "text_model.embeddings.position_ids"] = torch.arange(pos.shape[0], dtype=torch.int64)[None]
    return out


_OPENCLIP_LAYER = [("self_attn.out_proj.", "attn.out_proj."), ("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."),
                   ("mlp.fc1.", "mlp.c_fc."), ("mlp.fc2.", "mlp.c_proj.")]


def openclip_to_ldm(state_dict: Mapping[str, torch.Tensor], root: str = OPENCLIP_ROOT) -> dict[str, torch.Tensor]:
    """HF CLIPTextModelWithProjection -> OpenCLIP layout (fused q/k/v `in_proj`, transposed `text_projection`)."""
    sd = {(k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v
          for k, v in state_dict.items()}
    out = {
        root + "token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
        root + "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
        root + "ln_final.weight": sd["text_model.final_layer_norm.weight"],
        root + "ln_final.bias": sd["text_model.final_layer_norm.bias"],
        root + "text_projection": sd["text_projection.weight"].T.contiguous(),
        root + "logit_scale": torch.tensor(math.log(1 / 0.07)),
    }
    layer_prefix = "text_model.encoder.layers."
    layers = sorted({int(k[len(layer_prefix):].split(".")[0]) for k in sd if k.startswith(layer_prefix)})
    for n in layers:
        src, dst = f"{layer_prefix}{n}.", f"{root}transformer.resblocks.{n}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(
                [sd[f"{src}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")], dim=0
            )
            for hf, ldm in _OPENCLIP_LAYER:
                out[f"{dst}{ldm}{kind}"] = sd[f"{src}{hf}{kind}"]
    return out


def to_single_file_state_dict(family: str, unet, vae, text_encoders) -> dict[str, torch.Tensor]:
    """The whole model's A1111 state dict (tensors shared with the models, not copied)."""
    if family not in CLIP_ROOT:
        raise ValueError(f"cannot write family {family!r}; expected sd15 or sdxl")
    out = unet_to_ldm(unet.state_dict(), unet.config)
    out.update(vae_to_ldm(vae.state_dict(), vae.config))
    out.update(clip_to_ldm(text_encoders[0].state_dict(), CLIP_ROOT[family][0]))
    if family == "sdxl":
        out.update(openclip_to_ldm(text_encoders[1].state_dict()))
    return out


def write_single_file(path: Path | str, family: str, unet, vae, text_encoders, *, dtype: torch.dtype | None = None,
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Saves the models as one A1111-layout .safetensors file (optionally cast to `dtype`, e.g. torch.float16)."""
    from safetensors.torch import save_file

    tensors = to_single_file_state_dict(family, unet, vae, text_encoders)
    prepared = {}
    for key, value in tensors.items():
        value = value.detach()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        prepared[key] = value.contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")  # parallel writers never share a temp file
    save_file(prepared, str(tmp), metadata=dict(metadata or {}))
    tmp.replace(path)
    return path
