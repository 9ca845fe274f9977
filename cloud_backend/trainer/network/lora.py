"""LoRA / LoCon / DoRA on sd-scripts' exact module set (through peft), and the one place that knows Kohya's names:
the writer of the Kohya file that A1111 1.10, Forge and ComfyUI load (lora_file.py reads one back to continue).

Module sets, from sd-scripts `networks/lora.py` (`LoRANetwork.create_modules`): every Linear and Conv2d inside the
UNet's Transformer2DModel blocks (`to_q to_k to_v to_out.0 proj_in proj_out ff.net.0.proj ff.net.2`: 192 modules in
SD1.5, 722 in SDXL) and the text encoders' CLIPAttention/CLIPMLP (`q_proj k_proj v_proj out_proj fc1 fc2`: 72 per
CLIP-L, 192 for SDXL's bigG). With `conv_dim` (LoCon) also every Linear and Conv2d inside ResnetBlock2D,
Downsample2D and Upsample2D: 3x3 convolutions get conv_dim/conv_alpha, the Linear `time_emb_proj` and 1x1
`conv_shortcut` get network_dim/network_alpha, exactly as sd-scripts decides.

Key names follow sd-scripts: `lora_unet_` + the diffusers module path for SD1 and the SGM/LDM path for SDXL
(`input_blocks_4_1_…`, `input_blocks_1_0_in_layers_2`, `input_blocks_3_0_op`), `lora_te_` (SD1) or
`lora_te1_`/`lora_te2_` (SDXL) + the HF CLIP path *with* `text_model_` (transformers >= 5.6 dropped that wrapper
from CLIPTextModel). Each module gets `.lora_down.weight` (peft lora_A), `.lora_up.weight` (lora_B), `.alpha` (the
module's own alpha; diffusers' convert_state_dict_to_kohya wrongly writes the rank), and for DoRA `.dora_scale`
(see dora.py). A LoCon 3x3 module's lora_down is a 3x3 Conv2d with the layer's stride and padding and lora_up a 1x1
Conv2d, as in sd-scripts' LoRAModule and what A1111's network_lora.py rebuilds.

Everything that names or writes Kohya keys is in this module (reading them back: lora_file.py), so the LoRA layers
themselves (peft today) can be replaced without touching the file format.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from . import dora
from .dora import ADAPTER
# The metadata lives in kohya_metadata.py; these names stay importable from here (the FLUX.1 writer uses them).
from .kohya_metadata import (BASE_MODEL_VERSION, FACT_KEYS, MODELSPEC_ARCH, MODELSPEC_IMPL,  # noqa: F401
                             build_metadata, safetensors_hashes)
from ..model.singlefile import unet_block_map, unet_key_to_ldm

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
# sd-scripts' LoRANetwork.UNET_TARGET_REPLACE_MODULE_CONV2D_3X3
CONV_BLOCKS = ("ResnetBlock2D", "Downsample2D", "Upsample2D")
SAVE_DTYPES = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
               "float": torch.float32, "fp32": torch.float32, "float32": torch.float32}
TE_PREFIXES = {"sd15": ["lora_te_"], "sdxl": ["lora_te1_", "lora_te2_"]}


class LoraFileError(ValueError):
    """A LoRA file to continue from does not fit this model or config; the message names the file and the fix."""


@dataclass
class Plan:
    """Which modules of one model get an adapter: {module path: (rank, alpha)}, and which of them are DoRA."""

    modules: dict[str, tuple[int, float]] = field(default_factory=dict)
    dora: set[str] = field(default_factory=set)


# --- which modules (sd-scripts' rule) ------------------------------------------------------------------------------

def _is_conv3(module) -> bool:
    return isinstance(module, torch.nn.Conv2d) and tuple(module.kernel_size) != (1, 1)


def _unalias_downsamplers(unet) -> None:
    """diffusers' Downsample2D(name="conv") registers its convolution twice, as `Conv2d_0` (first) and `conv`, and
    runs `conv`. named_modules() names it `Conv2d_0`, so peft would wrap that alias and the LoRA would never run.
    The alias only exists for loading old weight names; dropping it leaves `conv`, sd-scripts' name."""
    for module in unet.modules():
        if type(module).__name__ == "Downsample2D" and getattr(module, "Conv2d_0", None) is getattr(module, "conv", 0):
            del module.Conv2d_0


def unet_plan(unet, rank: int, alpha: float, conv_dim: int = 0, conv_alpha: float = 1.0, use_dora: bool = False) -> Plan:
    _unalias_downsamplers(unet)
    plan = Plan()
    for name, module in unet.named_modules():
        if any(name == t or name.endswith("." + t) for t in UNET_TARGETS):
            plan.modules[name] = (int(rank), float(alpha))
    if conv_dim:
        for name, block in unet.named_modules():
            if type(block).__name__ not in CONV_BLOCKS:
                continue
            for child_name, child in block.named_modules():
                if not isinstance(child, (torch.nn.Linear, torch.nn.Conv2d)) or not child_name:
                    continue
                path = f"{name}.{child_name}"
                plan.modules[path] = (int(conv_dim), float(conv_alpha)) if _is_conv3(child) else (int(rank), float(alpha))
    if use_dora:
        plan.dora = set(plan.modules)
    return plan


def text_encoder_plan(encoder, rank: int, alpha: float, use_dora: bool = False) -> Plan:
    plan = Plan({name: (int(rank), float(alpha)) for name, _ in encoder.named_modules()
                 if any(name == t or name.endswith("." + t) for t in TEXT_ENCODER_TARGETS)})
    if use_dora:
        plan.dora = set(plan.modules)
    return plan


# --- injecting (peft) ----------------------------------------------------------------------------------------------

def _alternation(paths) -> str:
    return "|".join(re.escape(p) for p in sorted(paths))


def _inject(model, plan: Plan) -> None:
    """Adds the adapters through peft's own API, never the model library's wrapper around it.

    transformers' `PreTrainedModel.add_adapter` gates on a minimum peft version of its own (5.24 wants peft >= 0.22,
    which did not exist when it shipped), and diffusers' has its own gate too. peft's `inject_adapter_in_model` is the
    function both wrappers end in. The exact module paths go in as one regex (peft full-matches a string target);
    modules whose rank or alpha differ from the most common one get them through rank_pattern/alpha_pattern, one
    alternation per value (peft matches those keys as `(.*\\.)?(key)$`).
    """
    from peft import LoraConfig, inject_adapter_in_model

    if not plan.modules:
        return
    ranks: dict[int, list[str]] = {}
    alphas: dict[float, list[str]] = {}
    for path, (r, a) in plan.modules.items():
        ranks.setdefault(r, []).append(path)
        alphas.setdefault(a, []).append(path)
    r0 = max(ranks, key=lambda r: len(ranks[r]))
    a0 = max(alphas, key=lambda a: len(alphas[a]))
    config = LoraConfig(
        r=r0, lora_alpha=a0, target_modules=f"(?:{_alternation(plan.modules)})", init_lora_weights=True,
        rank_pattern={_alternation(p): r for r, p in ranks.items() if r != r0},
        alpha_pattern={_alternation(p): a for a, p in alphas.items() if a != a0})
    inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    for path in plan.dora:
        dora.add(model.get_submodule(path))


def _trainable(model, train: bool = True) -> list[torch.nn.Parameter]:
    params = []
    for name, p in model.named_parameters():
        if "lora_" in name or dora.PARAM in name:
            # Adapter weights train in fp32 even when the base model is fp16/bf16 (mixed precision needs fp32 masters).
            p.data = p.data.float()
            p.requires_grad_(train)
            if train:
                params.append(p)
    return params


def add_lora(components, rank: int, alpha: float, train_text_encoder: bool = True, *, conv_dim: int = 0,
             conv_alpha: float = 1.0, use_dora: bool = False, plans: Mapping[str, Plan] | None = None) -> dict[str, list]:
    """Injects the adapters into the UNet and, if asked, every text encoder.

    plans: {"unet": Plan, "text_encoder_0": Plan, ...} from a LoRA file (`plans_from_file`) instead of the rule;
    a text encoder that has a plan gets its adapters even when it does not train (they stay frozen).
    Returns {"unet": [params], "text_encoder": [params of the trained text encoders]}.
    """
    if int(rank) < 1:
        raise ValueError(f"network_dim (rank) must be at least 1, got {rank}")
    if use_dora and components.family == "sdxl" and train_text_encoder:
        raise ValueError("DoRA on SDXL's second text encoder does not load in A1111 1.10 (its fused attention "
                         "projection cannot take a dora_scale): set network_train_unet_only = true with dora_wd")
    plans = dict(plans or {})
    unet = plans["unet"] if "unet" in plans else (Plan() if plans else
                                                  unet_plan(components.unet, rank, alpha, conv_dim, conv_alpha, use_dora))
    _inject(components.unet, unet)
    groups = {"unet": _trainable(components.unet), "text_encoder": []}
    for i, encoder in enumerate(components.text_encoders):
        plan = plans.get(f"text_encoder_{i}")
        if plan is None and train_text_encoder and not plans:
            plan = text_encoder_plan(encoder, rank, alpha, use_dora)
        if plan is None or not plan.modules:
            continue
        _inject(encoder, plan)
        groups["text_encoder"] += _trainable(encoder, train=train_text_encoder)
    components.extra["lora"] = {"rank": int(rank), "alpha": float(alpha), "text_encoder": bool(train_text_encoder)}
    return groups


def text_encoder_param_groups(components) -> list[list]:
    """LoRA params per text encoder, in encoder order (empty lists when the encoders carry no LoRA)."""
    return [[p for n, p in e.named_parameters() if "lora_" in n] for e in components.text_encoders]


def lora_layers(model) -> dict[str, Any]:
    """{module path: peft LoraLayer} for every module that carries our adapter."""
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer) and ADAPTER in m.lora_A}


# --- Kohya names ---------------------------------------------------------------------------------------------------

def _unet_namer(components):
    block_map = unet_block_map(components.unet.config) if components.family == "sdxl" else None

    def name(path: str) -> str:
        # through the module's weight key: the resnet renames (conv1 -> in_layers.2) apply to whole names only
        ldm = unet_key_to_ldm(path + ".weight", block_map)[:-len(".weight")] if block_map else path
        return "lora_unet_" + ldm.replace(".", "_")
    return name


def _te_name(prefix: str, path: str) -> str:
    full = path if path.startswith("text_model.") else "text_model." + path
    return prefix + full.replace(".", "_")


def kohya_module_names(components) -> dict[str, tuple[Any, str]]:
    """{Kohya module name (no suffix): (model, module path)} for every adapted module."""
    out: dict[str, tuple[Any, str]] = {}
    unet_name = _unet_namer(components)
    for path in lora_layers(components.unet):
        out[unet_name(path)] = (components.unet, path)
    for prefix, encoder in zip(TE_PREFIXES[components.family], components.text_encoders):
        for path in lora_layers(encoder):
            out[_te_name(prefix, path)] = (encoder, path)
    return out


def candidate_names(components) -> dict[str, tuple[str, str]]:
    """{Kohya name: (model key "unet" | "text_encoder_<i>", module path)} of every module sd-scripts could adapt
    (attention, feed-forward, LoCon convolutions, text encoders), for reading a file back."""
    out: dict[str, tuple[str, str]] = {}
    unet_name = _unet_namer(components)
    for path in unet_plan(components.unet, 1, 1.0, conv_dim=1).modules:
        out[unet_name(path)] = ("unet", path)
    for i, (prefix, encoder) in enumerate(zip(TE_PREFIXES[components.family], components.text_encoders)):
        for path in text_encoder_plan(encoder, 1, 1.0).modules:
            out[_te_name(prefix, path)] = (f"text_encoder_{i}", path)
    return out


# --- writing -------------------------------------------------------------------------------------------------------

def kohya_state_dict(components, alpha: float | None = None, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """The adapters as Kohya tensors: lora_down = peft lora_A, lora_up = peft lora_B, alpha = the module's alpha
    (peft's lora_alpha, i.e. network_alpha or conv_alpha), dora_scale for DoRA layers. `alpha` is ignored (kept for
    callers of the old signature): each layer knows its own."""
    out: dict[str, torch.Tensor] = {}
    for kohya, (model, path) in kohya_module_names(components).items():
        layer = model.get_submodule(path)
        out[f"{kohya}.lora_down.weight"] = layer.lora_A[ADAPTER].weight.detach().to("cpu", dtype).contiguous()
        out[f"{kohya}.lora_up.weight"] = layer.lora_B[ADAPTER].weight.detach().to("cpu", dtype).contiguous()
        out[f"{kohya}.alpha"] = torch.tensor(float(layer.lora_alpha[ADAPTER]), dtype=dtype)
        scale = dora.scale_of(layer)
        if scale is not None:
            out[f"{kohya}.dora_scale"] = scale.detach().to("cpu", dtype).contiguous()
    return out


def save_kohya(path: Path | str, components, rank: int, alpha: float, metadata: Mapping[str, Any] | None = None,
               save_dtype: str | torch.dtype = "fp16") -> Path:
    """Writes the adapters as a Kohya LoRA .safetensors with ss_*/modelspec.*/sshs_* metadata; returns the path.

    metadata: the training facts (kohya_metadata's docstring lists them). ss_output_name is always the file stem,
    which A1111 shows as the LoRA's alias. save_dtype: "fp16" | "bf16" | "float" (or a torch dtype).
    """
    from safetensors.torch import save_file

    path = Path(path)
    dtype = save_dtype if isinstance(save_dtype, torch.dtype) else SAVE_DTYPES.get(str(save_dtype).lower())
    if dtype is None:
        raise ValueError(f"save_precision {save_dtype!r} is not one of fp16, bf16, float")
    tensors = kohya_state_dict(components, alpha, dtype)
    if not tensors:
        raise ValueError("the model carries no LoRA adapters: call add_lora first")
    facts = dict(metadata or {})
    facts.setdefault("sd_model_name", components.model_name)
    meta = build_metadata(components.family, path.stem, rank, alpha, facts, model_name=components.model_name)
    meta["sshs_model_hash"], meta["sshs_legacy_hash"] = safetensors_hashes(tensors, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)  # a reader never sees half a LoRA
    return path
