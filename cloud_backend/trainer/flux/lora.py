"""LoRA on FLUX.1's transformer (through peft) on sd-scripts' module set, and the Kohya-format Flux LoRA writer.

Module set: every Linear in the double and single blocks, as sd-scripts' networks/lora_flux.py creates with its
default network_args (train_blocks "all", no split_qkv, no in_dims): per double block img_mod.lin, img_attn.qkv,
img_attn.proj, img_mlp.0, img_mlp.2 and the same for txt; per single block linear1, linear2, modulation.lin. Because
the model is in BFL's layout (model.py), the fused qkv / linear1 layers carry one rank-r LoRA each, as sd-scripts'.
The text encoders get no LoRA: sd-scripts (network_train_unet_only, and it never trains T5 unless train_t5xxl) and
ai-toolkit train the transformer only for FLUX.1.

Keys: `lora_unet_` + the BFL module path with `.` -> `_` (`lora_unet_double_blocks_0_img_attn_qkv`,
`lora_unet_single_blocks_37_linear1`), each with `.lora_down.weight`, `.lora_up.weight` and `.alpha`, which Forge,
ComfyUI, sd-scripts and diffusers' FluxPipeline.load_lora_weights all read. Metadata as sd-scripts' Flux LoRAs:
ss_base_model_version "flux1", ss_network_module "networks.lora_flux", modelspec.architecture "flux-1-dev/lora"
(Forge's network.py reads this, or modelspec.implementation = BFL's repository, as Flux), and the Flux settings
(ss_guidance_scale, ss_timestep_sampling, ...) as flux_train_network.py's update_metadata writes them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from ..network.lora import ADAPTER, build_metadata, lora_layers, safetensors_hashes
from ..model import flux_keys as K

TARGETS = list(K.DOUBLE_TARGETS + K.SINGLE_TARGETS)
NETWORK_MODULE = "networks.lora_flux"
IMPLEMENTATION = "https://github.com/black-forest-labs/flux"


def add_lora(transformer, rank: int, alpha: float) -> list[torch.nn.Parameter]:
    """Injects the LoRA; returns its (fp32, trainable) parameters. Works on an fp8-stored base: peft gives new
    adapters the base weight's dtype, so they are cast back to fp32 and initialised again there."""
    from peft import LoraConfig, inject_adapter_in_model

    if int(rank) < 1:
        raise ValueError(f"network_dim (rank) must be at least 1, got {rank}")
    config = LoraConfig(r=int(rank), lora_alpha=float(alpha), target_modules=TARGETS, init_lora_weights=True)
    inject_adapter_in_model(config, transformer, adapter_name=ADAPTER)
    params = []
    for layer in lora_layers(transformer).values():
        for sub in (layer.lora_A[ADAPTER], layer.lora_B[ADAPTER]):
            sub.to(torch.float32)
        layer.reset_lora_parameters(ADAPTER, True)  # kaiming-uniform A, zero B (peft's default), now in fp32
        for sub in (layer.lora_A[ADAPTER], layer.lora_B[ADAPTER]):
            sub.weight.requires_grad_(True)
            params.append(sub.weight)
    return params


def kohya_state_dict(transformer, alpha: float, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    out = {}
    for path, layer in lora_layers(transformer).items():
        name = K.kohya_name(path)
        out[f"{name}.lora_down.weight"] = layer.lora_A[ADAPTER].weight.detach().to("cpu", dtype).contiguous()
        out[f"{name}.lora_up.weight"] = layer.lora_B[ADAPTER].weight.detach().to("cpu", dtype).contiguous()
        out[f"{name}.alpha"] = torch.tensor(float(alpha), dtype=dtype)
    return out


def flux_metadata(cfg) -> dict[str, str]:
    """The Flux training settings as sd-scripts' flux_train_network.py update_metadata records them (it writes no
    t5xxl_max_token_length; logit_mean, logit_std and mode_scale are its defaults: this trainer has no such
    weighting schemes)."""
    return {"ss_guidance_scale": str(float(cfg.guidance_scale)), "ss_timestep_sampling": cfg.timestep_sampling,
            "ss_sigmoid_scale": str(float(cfg.sigmoid_scale)), "ss_model_prediction_type": cfg.model_prediction_type,
            "ss_discrete_flow_shift": str(float(cfg.discrete_flow_shift)),
            "ss_apply_t5_attn_mask": str(bool(cfg.apply_t5_attn_mask)), "ss_model_type": "flux",
            "ss_weighting_scheme": str(getattr(cfg, "weighting_scheme", "uniform") or "uniform"),
            "ss_fp8_base": str(bool(cfg.fp8_base))}


def save_flux_lora(path: Path | str, components, rank: int, alpha: float, facts: Mapping[str, Any] | None,
                   save_dtype: torch.dtype, extra: Mapping[str, str] | None = None) -> Path:
    """Writes the Kohya Flux LoRA with ss_*/modelspec.*/sshs_* metadata, atomically; returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = kohya_state_dict(components.unet, alpha, save_dtype)
    if not tensors:
        raise ValueError("the transformer carries no LoRA adapters: call add_lora first")
    facts = dict(facts or {})
    facts.setdefault("sd_model_name", components.model_name)
    meta = build_metadata("flux", path.stem, rank, alpha, facts, model_name=components.model_name)
    variant = components.extra.get("variant", "dev")
    meta.pop("modelspec.prediction_type", None)  # sd-scripts writes none for Flux
    meta.update({"ss_network_module": NETWORK_MODULE, "modelspec.architecture": f"flux-1-{variant}/lora",
                 "modelspec.implementation": IMPLEMENTATION, **dict(extra or {})})
    meta["sshs_model_hash"], meta["sshs_legacy_hash"] = safetensors_hashes(tensors, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path
