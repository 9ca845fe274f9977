"""LoRA on Kohya's exact module set (through peft), and the Kohya-format writer that A1111 1.10 and Forge load.

Module sets (REFERENCE §2): UNet `to_q to_k to_v to_out.0 proj_in proj_out ff.net.0.proj ff.net.2` (192 modules in
SD1.5, 722 in SDXL); text encoders `q_proj k_proj v_proj out_proj fc1 fc2` (72 per CLIP-L, 192 for SDXL's bigG).

Key names follow sd-scripts: `lora_unet_` + the diffusers module path for SD1 and the SGM/LDM path for SDXL
(`input_blocks_4_1_…`), `lora_te_` (SD1) or `lora_te1_`/`lora_te2_` (SDXL) + the HF CLIP path *with* `text_model_`
(transformers >= 5.6 dropped that wrapper from CLIPTextModel). Each module gets `.lora_down.weight`,
`.lora_up.weight` and `.alpha` = network_alpha (diffusers' convert_state_dict_to_kohya wrongly writes the rank).

The training facts `save_kohya` turns into `ss_*`/`modelspec.*` metadata (all optional; `FACT_KEYS` lists them):
  steps, max_train_steps, epoch, epochs        int
  num_train_images, num_reg_images             int (images x repeats per epoch, as sd-scripts counts them)
  num_batches_per_epoch, batch_size, gradient_accumulation_steps   int
  resolution                                   int or (width, height)
  tag_frequency                                {dataset folder name: {tag: count}}
  dataset_dirs                                 {folder name: {"n_repeats": int, "img_count": int}}
  trigger_phrase                               str (also modelspec.trigger_phrase)
  training_started_at, training_finished_at    unix seconds (float)
  learning_rate, unet_lr, text_encoder_lr      float (text_encoder_lr may be a list for SDXL)
  optimizer, lr_scheduler, mixed_precision     str
  lr_warmup_steps, seed, clip_skip, keep_tokens, max_bucket_reso, min_bucket_reso, bucket_reso_steps   int
  noise_offset, min_snr_gamma, caption_dropout_rate, prior_loss_weight, max_grad_norm   float
  shuffle_caption, flip_aug, enable_bucket, cache_latents, gradient_checkpointing,
  train_unet_only, bucket_no_upscale           bool
  sd_model_name, vae_name, title, description, author, comment   str
"""
from __future__ import annotations

import datetime
import hashlib
import json
import time
from io import BytesIO
from pathlib import Path
from typing import Any, Mapping

import torch

from .singlefile import unet_block_map, unet_key_to_ldm

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
ADAPTER = "default"
SAVE_DTYPES = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
               "float": torch.float32, "fp32": torch.float32, "float32": torch.float32}
BASE_MODEL_VERSION = {"sd15": "sd_v1", "sdxl": "sdxl_base_v1-0", "flux": "flux1"}
MODELSPEC_ARCH = {"sd15": "stable-diffusion-v1/lora", "sdxl": "stable-diffusion-xl-v1-base/lora",
                  "flux": "flux-1-dev/lora"}
# sd-scripts' sai_model_spec: an SDXL LoRA names Stability's implementation, an SD1 LoRA "diffusers".
MODELSPEC_IMPL = {"sd15": "diffusers", "sdxl": "https://github.com/Stability-AI/generative-models",
                  "flux": "https://github.com/black-forest-labs/flux"}
TE_PREFIXES = {"sd15": ["lora_te_"], "sdxl": ["lora_te1_", "lora_te2_"]}


def _lora_config(rank: int, alpha: float, targets: list[str]):
    from peft import LoraConfig

    return LoraConfig(r=int(rank), lora_alpha=float(alpha), target_modules=list(targets), init_lora_weights=True)


def _inject(model, config) -> None:
    """Adds the adapter through peft's own API, never the model library's wrapper around it.

    transformers' `PreTrainedModel.add_adapter` gates on a minimum peft version of its own (5.24 wants peft >= 0.22,
    which did not exist when it shipped), and diffusers' has its own gate too. peft's `inject_adapter_in_model` is the
    function both wrappers end in, so the result is the same LoraLayer modules with one less thing that can break.
    """
    from peft import inject_adapter_in_model

    inject_adapter_in_model(config, model, adapter_name=ADAPTER)


def _trainable(model) -> list[torch.nn.Parameter]:
    params = []
    for name, p in model.named_parameters():
        if "lora_" in name:
            # LoRA weights train in fp32 even when the base model is fp16/bf16 (mixed precision needs fp32 masters).
            p.data = p.data.float()
            p.requires_grad_(True)
            params.append(p)
    return params


def add_lora(components, rank: int, alpha: float, train_text_encoder: bool = True) -> dict[str, list]:
    """Injects LoRA adapters (peft) into the UNet and, if asked, every text encoder.

    Returns {"unet": [params], "text_encoder": [params of all text encoders]} (the second empty for UNet-only).
    `text_encoder_param_groups(components)` gives the text-encoder params per encoder (SDXL's two learning rates).
    """
    if int(rank) < 1:
        raise ValueError(f"network_dim (rank) must be at least 1, got {rank}")
    _inject(components.unet, _lora_config(rank, alpha, UNET_TARGETS))
    groups = {"unet": _trainable(components.unet), "text_encoder": []}
    if train_text_encoder:
        for encoder in components.text_encoders:
            _inject(encoder, _lora_config(rank, alpha, TEXT_ENCODER_TARGETS))
            groups["text_encoder"] += _trainable(encoder)
    components.extra["lora"] = {"rank": int(rank), "alpha": float(alpha), "text_encoder": bool(train_text_encoder)}
    return groups


def text_encoder_param_groups(components) -> list[list]:
    """LoRA params per text encoder, in encoder order (empty lists when the encoders carry no LoRA)."""
    return [[p for n, p in e.named_parameters() if "lora_" in n] for e in components.text_encoders]


def lora_layers(model) -> dict[str, Any]:
    """{module path: peft LoraLayer} for every module that carries our adapter."""
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer) and ADAPTER in m.lora_A}


def kohya_module_names(components) -> dict[str, tuple[Any, str]]:
    """{Kohya module name (no suffix): (model, module path)} for every adapted module."""
    out: dict[str, tuple[Any, str]] = {}
    block_map = unet_block_map(components.unet.config) if components.family == "sdxl" else None
    for path in lora_layers(components.unet):
        name = unet_key_to_ldm(path + ".", block_map)[:-1] if block_map else path
        out["lora_unet_" + name.replace(".", "_")] = (components.unet, path)
    for prefix, encoder in zip(TE_PREFIXES[components.family], components.text_encoders):
        for path in lora_layers(encoder):
            full = path if path.startswith("text_model.") else "text_model." + path
            out[prefix + full.replace(".", "_")] = (encoder, path)
    return out


def kohya_state_dict(components, alpha: float, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """The adapters as Kohya tensors: lora_down = peft lora_A, lora_up = peft lora_B, alpha = network_alpha."""
    out: dict[str, torch.Tensor] = {}
    for kohya, (model, path) in kohya_module_names(components).items():
        layer = model.get_submodule(path)
        out[f"{kohya}.lora_down.weight"] = layer.lora_A[ADAPTER].weight.detach().to("cpu", dtype).contiguous()
        out[f"{kohya}.lora_up.weight"] = layer.lora_B[ADAPTER].weight.detach().to("cpu", dtype).contiguous()
        out[f"{kohya}.alpha"] = torch.tensor(float(alpha), dtype=dtype)
    return out


FACT_KEYS = {
    # fact -> ss_* key
    "steps": "ss_steps", "max_train_steps": "ss_max_train_steps", "epoch": "ss_epoch", "epochs": "ss_num_epochs",
    "num_train_images": "ss_num_train_images", "num_reg_images": "ss_num_reg_images",
    "num_batches_per_epoch": "ss_num_batches_per_epoch", "batch_size": "ss_batch_size_per_device",
    "gradient_accumulation_steps": "ss_gradient_accumulation_steps", "resolution": "ss_resolution",
    "tag_frequency": "ss_tag_frequency", "dataset_dirs": "ss_dataset_dirs", "trigger_phrase": None,
    "training_started_at": "ss_training_started_at", "training_finished_at": "ss_training_finished_at",
    "learning_rate": "ss_learning_rate", "unet_lr": "ss_unet_lr", "text_encoder_lr": "ss_text_encoder_lr",
    "optimizer": "ss_optimizer", "lr_scheduler": "ss_lr_scheduler", "mixed_precision": "ss_mixed_precision",
    "lr_warmup_steps": "ss_lr_warmup_steps", "seed": "ss_seed", "clip_skip": "ss_clip_skip",
    "keep_tokens": "ss_keep_tokens", "max_bucket_reso": "ss_max_bucket_reso", "min_bucket_reso": "ss_min_bucket_reso",
    "bucket_reso_steps": "ss_bucket_reso_steps", "noise_offset": "ss_noise_offset", "min_snr_gamma": "ss_min_snr_gamma",
    "caption_dropout_rate": "ss_caption_dropout_rate", "prior_loss_weight": "ss_prior_loss_weight",
    "max_grad_norm": "ss_max_grad_norm", "shuffle_caption": "ss_shuffle_caption", "flip_aug": "ss_flip_aug",
    "enable_bucket": "ss_enable_bucket", "cache_latents": "ss_cache_latents",
    "gradient_checkpointing": "ss_gradient_checkpointing", "train_unet_only": "ss_network_train_unet_only",
    "bucket_no_upscale": "ss_bucket_no_upscale", "sd_model_name": "ss_sd_model_name", "vae_name": "ss_vae_name",
    "comment": "ss_training_comment", "title": None, "description": None, "author": None,
}


def _resolution(value) -> tuple[int, int]:
    if isinstance(value, (int, float)):
        return int(value), int(value)
    if isinstance(value, str):
        parts = [int(p) for p in value.replace("x", ",").split(",") if p.strip()]
        return (parts[0], parts[-1]) if parts else (0, 0)
    w, h = list(value)[:2]
    return int(w), int(h)


def _text(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)  # bools as "True"/"False", like sd-scripts


def build_metadata(family: str, output_name: str, rank: int, alpha: float, facts: Mapping[str, Any] | None = None,
                   model_name: str = "") -> dict[str, str]:
    """The ss_* and modelspec.* metadata (without the sshs_* hashes, which need the final tensors)."""
    facts = dict(facts or {})
    unknown = sorted(set(facts) - set(FACT_KEYS))
    if unknown:
        raise ValueError(f"unknown training facts {unknown}; known: {sorted(FACT_KEYS)}")
    started = float(facts.get("training_started_at") or time.time())
    meta: dict[str, str] = {
        "ss_base_model_version": BASE_MODEL_VERSION[family],
        "ss_v2": "False",
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(int(rank)),
        "ss_network_alpha": str(float(alpha)),
        "ss_output_name": output_name,
        "ss_sd_model_name": model_name,
        "ss_training_started_at": str(started),
    }
    if "tag_frequency" not in facts:
        meta["ss_tag_frequency"] = "{}"
    for fact, value in facts.items():
        key = FACT_KEYS[fact]
        if key is None or value is None:
            continue
        if fact == "resolution":
            meta[key] = str(_resolution(value))  # sd-scripts writes "(512, 512)"
        else:
            meta[key] = _text(value)
    width, height = _resolution(facts.get("resolution", 512 if family == "sd15" else 1024))
    meta.update({
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": MODELSPEC_ARCH[family],
        "modelspec.implementation": MODELSPEC_IMPL[family],
        "modelspec.title": str(facts.get("title") or output_name),
        "modelspec.resolution": f"{width}x{height}",
        "modelspec.date": datetime.datetime.fromtimestamp(int(started)).isoformat(),
        "modelspec.prediction_type": "epsilon",
    })
    for fact in ("trigger_phrase", "description", "author"):
        if facts.get(fact):
            meta[f"modelspec.{fact}"] = str(facts[fact])
    return meta


def safetensors_hashes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> tuple[str, str]:
    """(sshs_model_hash, sshs_legacy_hash) as sd-scripts' precalculate_safetensors_hashes computes them.

    The file is serialised with only the ss_* metadata; the model hash is the SHA-256 of everything after the
    header, the legacy hash the first 8 hex digits of the SHA-256 of 64 KiB at offset 1 MiB.
    """
    from safetensors.torch import save

    data = save(dict(tensors), {k: v for k, v in metadata.items() if k.startswith("ss_")})
    header_len = int.from_bytes(data[:8], "little")
    model_hash = hashlib.sha256(data[8 + header_len:]).hexdigest()
    legacy = hashlib.sha256(BytesIO(data).getbuffer()[0x100000:0x100000 + 0x10000]).hexdigest()[:8]
    return model_hash, legacy


def save_kohya(path: Path | str, components, rank: int, alpha: float, metadata: Mapping[str, Any] | None = None,
               save_dtype: str | torch.dtype = "fp16") -> Path:
    """Writes the adapters as a Kohya LoRA .safetensors with ss_*/modelspec.*/sshs_* metadata; returns the path.

    metadata: the training facts (see the module docstring). ss_output_name is always the file stem, which A1111
    shows as the LoRA's alias. save_dtype: "fp16" | "bf16" | "float" (or a torch dtype).
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
