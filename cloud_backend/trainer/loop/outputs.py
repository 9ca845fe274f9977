"""What a finished (or intermediate) run leaves in the model dir: the Kohya LoRA with its training metadata, the
A1111 sidecar <name>.json, and the preview <name>.preview.png."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "float": torch.float32}
SD_VERSION = {"sd15": "SD1", "sdxl": "SDXL", "flux": "Flux"}  # Forge's SdVersion names (A1111 has no Flux)


def training_facts(cfg, components, data, *, steps: int, epoch: int, started_at: float, batches_per_epoch: int,
                   dataset_name: str) -> dict:
    """The run's facts in the form lora.save_kohya turns into sd-scripts' ss_* / modelspec.* metadata."""
    te_lrs = cfg.text_encoder_lrs(len(components.text_encoders))
    comment = cfg.training_comment or (f"dataset: {dataset_name}" if dataset_name else "")
    facts = {
        "steps": steps, "max_train_steps": steps, "epoch": epoch,
        "num_train_images": data.images_per_epoch, "num_reg_images": len(data.reg_examples),
        "num_batches_per_epoch": batches_per_epoch, "batch_size": cfg.train_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps, "resolution": cfg.resolution_wh,
        "tag_frequency": data.tag_frequency,
        "dataset_dirs": {name: {"n_repeats": n, "img_count": c} for name, n, c in _dirs(data)},
        "trigger_phrase": ", ".join(data.triggers),
        "training_started_at": started_at, "training_finished_at": time.time(),
        "learning_rate": cfg.learning_rate, "unet_lr": cfg.effective_unet_lr,
        "text_encoder_lr": te_lrs[0],  # one number, as sd-scripts writes it for networks.lora
        "optimizer": cfg.optimizer_type, "lr_scheduler": cfg.lr_scheduler, "mixed_precision": cfg.mixed_precision,
        "lr_warmup_steps": cfg.warmup_steps(steps), "seed": cfg.seed,
        "clip_skip": cfg.clip_skip if components.family == "sd15" else None,
        "keep_tokens": cfg.keep_tokens, "max_bucket_reso": cfg.max_bucket_reso,
        "min_bucket_reso": cfg.min_bucket_reso, "bucket_reso_steps": cfg.bucket_reso_steps,
        "noise_offset": cfg.noise_offset or None, "min_snr_gamma": cfg.min_snr_gamma or None,
        "caption_dropout_rate": cfg.caption_dropout_rate, "prior_loss_weight": cfg.prior_loss_weight,
        "max_grad_norm": cfg.max_grad_norm, "shuffle_caption": cfg.shuffle_caption, "flip_aug": cfg.flip_aug,
        "enable_bucket": cfg.enable_bucket, "cache_latents": cfg.cache_latents,
        "gradient_checkpointing": cfg.gradient_checkpointing, "train_unet_only": cfg.network_train_unet_only,
        "bucket_no_upscale": cfg.bucket_no_upscale, "sd_model_name": components.model_name,
        "comment": comment or None, "title": cfg.metadata_title or None,
        "description": cfg.metadata_description or None, "author": cfg.metadata_author or None,
    }
    return {k: v for k, v in facts.items() if v is not None}


def run_facts(trainer, *, epochs: int) -> dict:
    """The facts only the running trainer knows: the network, the schedule, validation, the session and the base
    model's hashes (see kohya_metadata's docstring)."""
    from ..network.kohya_metadata import model_hashes

    cfg, paths = trainer.cfg, trainer.paths
    if not hasattr(trainer, "_model_hashes"):
        trainer._model_hashes = model_hashes(paths.model, paths.model_sha256)
    short, full = trainer._model_hashes
    spec = cfg.network
    validating = bool(cfg.validation_split)
    facts = {
        "epochs": epochs, "max_train_steps": trainer.total_steps, "session_id": trainer.session_id,
        "sd_model_hash": short or None, "new_sd_model_hash": full or None,
        "network_module": spec.module, "network_args": spec.ss_network_args(),
        "v_parameterization": getattr(trainer, "v_pred", False),
        "zero_terminal_snr": getattr(trainer, "zero_terminal_snr", False),
        "multires_noise_iterations": cfg.multires_noise_iterations or None,
        "multires_noise_discount": cfg.multires_noise_discount,
        "min_timestep": cfg.min_timestep, "max_timestep": cfg.max_timestep,
        "num_validation_images": len(trainer.held_out),
        "validation_split": cfg.validation_split or None,
        "validation_seed": cfg.effective_validation_seed if validating else None,
        # sd-scripts' None means "not set": 0 here
        "validate_every_n_epochs": cfg.validate_every_n_epochs if validating else None,
        "validate_every_n_steps": (cfg.validate_every_n_steps or None) if validating else None,
        "max_validation_steps": (cfg.max_validation_steps or None) if validating else None,
        "caption_dropout_every_n_epochs": cfg.caption_dropout_every_n_epochs,
        "caption_tag_dropout_rate": cfg.caption_tag_dropout_rate,
        "fp8_base": bool(getattr(cfg, "fp8_base", False)),
        "optimizer": optimizer_name(getattr(trainer, "optimizer", None), cfg.optimizer_type, cfg.optimizer_args),
        "bucket_info": bucket_info(trainer.data) if cfg.enable_bucket else None,
    }
    return {k: v for k, v in facts.items() if v is not None}


def optimizer_name(optimizer, fallback: str, args) -> str:
    """ss_optimizer as sd-scripts writes it (train_util.get_optimizer): the optimizer class's module and name, and
    its arguments in brackets, e.g. "torch.optim.adamw.AdamW(weight_decay=0.01)"."""
    from .optim import parse_optimizer_args

    if optimizer is None:
        return fallback
    cls = type(optimizer)
    kwargs = parse_optimizer_args(list(args or []))
    extra = ",".join(f"{k}={v}" for k, v in kwargs.items())
    return f"{cls.__module__}.{cls.__name__}" + (f"({extra})" if extra else "")


def bucket_info(data) -> dict:
    """ss_bucket_info as sd-scripts' BaseDataset.make_buckets records it: the images per bucket (repeats
    included), numbered in resolution order, and the mean |bucket aspect - image aspect| over the images."""
    counts: dict[tuple[int, int], int] = {}
    errors = []
    for ex, n in zip(data.examples, data.repeats):
        counts[ex.placement.bucket] = counts.get(ex.placement.bucket, 0) + n
        (bw, bh), (rw, rh) = ex.placement.bucket, ex.placement.resized
        errors.append(bw / bh - rw / rh)
    buckets = {str(i): {"resolution": list(reso), "count": counts[reso]} for i, reso in enumerate(sorted(counts))}
    mean = sum(abs(e) for e in errors) / len(errors) if errors else 0
    return {"buckets": buckets, "mean_img_ar_error": mean}


def _dirs(data):
    seen: dict[str, list] = {}
    for ex, n in zip(data.examples, data.repeats):
        seen.setdefault(ex.image.parent.name, [n, 0])[1] += 1
    return [(k, v[0], v[1]) for k, v in seen.items()]


def save_lora(path: Path, components, cfg, facts: dict) -> Path:
    """The Kohya LoRA (T1's writer: keys A1111 loads, alpha = network_alpha, ss_output_name = the file stem)."""
    from ..network.lora import save_kohya

    return save_kohya(path, components, cfg.network_dim, cfg.network_alpha, facts, SAVE_DTYPES[cfg.save_precision])


def write_sidecar(path: Path, *, family: str, triggers: list[str], output_name: str, model_name: str,
                  dataset_name: str, steps: int, cfg) -> Path:
    """The A1111 Lora card's <name>.json: activation text = trigger words, SD version, preferred weight."""
    sidecar = {
        "description": (f"LoRA '{output_name}' trained by Cloud LoRA Trainer on "
                        f"{repr(dataset_name) if dataset_name else 'the ' + ', '.join(triggers) + ' dataset'}."),
        "sd version": SD_VERSION.get(family, "Unknown"),
        "activation text": ", ".join(triggers),
        "preferred weight": 1,
        "negative text": "",
        "notes": (f"base model: {model_name}; dataset: {dataset_name or ', '.join(triggers)}; steps: {steps}; "
                  f"dim {cfg.network_dim}, alpha {cfg.network_alpha:g}; {cfg.optimizer_type} "
                  f"lr {cfg.effective_unet_lr:g}; resolution {cfg.resolution}"),
    }
    path.write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
    return path


def write_preview(path: Path, source: Path) -> Path:
    shutil.copyfile(source, path)
    return path
