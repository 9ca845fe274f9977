"""The `ss_*`, `modelspec.*` and `sshs_*` metadata of a Kohya LoRA file, as sd-scripts writes it.

Sources: sd-scripts `train_network.py` (the `metadata` dict of `NetworkTrainer.train`: ss_session_id, ss_num_epochs,
ss_text_encoder_lr as *one* number for networks.lora, ss_network_args as JSON, ss_sd_model_hash /
ss_new_sd_model_hash via `train_util.model_hash` / `train_util.calculate_sha256`), and `library/sai_model_spec.py`
(ModelSpec 1.0.1: architecture, implementation, resolution, prediction_type "epsilon" | "v", timestep_range,
encoder_layer). A1111 1.10.1 reads ss_base_model_version / ss_v2 and ss_output_name (`network.py`), Forge reads
modelspec.architecture; both are always written.

The training facts `build_metadata` turns into metadata (all optional; `FACT_KEYS` lists them):
  steps, max_train_steps, epoch, epochs        int
  num_train_images, num_reg_images, num_validation_images   int (images x repeats per epoch, as sd-scripts counts)
  num_batches_per_epoch, batch_size, gradient_accumulation_steps   int
  resolution                                   int or (width, height)
  tag_frequency                                {dataset folder name: {tag: count}}
  dataset_dirs                                 {folder name: {"n_repeats": int, "img_count": int}}
  trigger_phrase                               str (also modelspec.trigger_phrase)
  training_started_at, training_finished_at    unix seconds (float)
  learning_rate, unet_lr, text_encoder_lr      float (a list for text_encoder_lr is written as its first value)
  optimizer, lr_scheduler, mixed_precision     str
  lr_warmup_steps, seed, clip_skip, keep_tokens, max_bucket_reso, min_bucket_reso, bucket_reso_steps   int
  noise_offset, min_snr_gamma, caption_dropout_rate, prior_loss_weight, max_grad_norm   float
  multires_noise_iterations int, multires_noise_discount float, zero_terminal_snr bool, v_parameterization bool
  validation_split float, validation_seed int (v_parameterization: modelspec.prediction_type only)
  shuffle_caption, flip_aug, enable_bucket, cache_latents, gradient_checkpointing,
  train_unet_only, bucket_no_upscale           bool
  session_id                                   int (random per run, kept across a resume: which run an epoch file is from)
  sd_model_hash, new_sd_model_hash             str (the base checkpoint's A1111 short hash and full SHA-256)
  network_module str, network_args {str: str}  (ss_network_args is written only when there are args, as sd-scripts)
  min_timestep, max_timestep                   int (modelspec.timestep_range when not the full 0..1000)
  sd_model_name, vae_name, title, description, author, comment   str
  total_batch_size int, bucket_info dict (ss_bucket_info), reg_dataset_dirs dict, and any key of SD_SCRIPTS_OFF
  by its fact name (the ss_ key without "ss_", e.g. fp8_base, caption_tag_dropout_rate, validate_every_n_epochs)

Every key sd-scripts' train_network.py writes for a train_data_dir run is written (SD_SCRIPTS_OFF): a setting this
trainer does not have gets the value sd-scripts writes when it is off, in sd-scripts' form (`str()` of the Python
value: None as "None", bools as "True"/"False", floats as "0.0"). Its conditional keys follow its conditions:
ss_network_args only with network args, ss_sd_model_hash / ss_new_sd_model_hash only for a base model that is a
file, ss_vae_* only with a VAE, ss_datasets never (no dataset_config).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import time
from io import BytesIO
from pathlib import Path
from typing import Any, Mapping

BASE_MODEL_VERSION = {"sd15": "sd_v1", "sdxl": "sdxl_base_v1-0", "flux": "flux1"}
MODELSPEC_ARCH = {"sd15": "stable-diffusion-v1/lora", "sdxl": "stable-diffusion-xl-v1-base/lora",
                  "flux": "flux-1-dev/lora"}
# sd-scripts' sai_model_spec.determine_implementation: an SDXL LoRA names Stability's implementation, SD1 "diffusers".
MODELSPEC_IMPL = {"sd15": "diffusers", "sdxl": "https://github.com/Stability-AI/generative-models",
                  "flux": "https://github.com/black-forest-labs/flux"}
MODELSPEC_VERSION = "1.0.1"

# The keys train_network.py always writes, with the value it writes when the setting is off (its argparse default;
# "None" where the default is None). Facts override them. From sd-scripts train_network.py (the `metadata` dict of
# NetworkTrainer.train and its train_data_dir branch) and library/train_util.py's argument defaults.
SD_SCRIPTS_OFF = {
    "ss_text_encoder_lr": "None", "ss_unet_lr": "None", "ss_num_validation_images": "0", "ss_network_dropout": "None",
    "ss_full_fp16": "False", "ss_clip_skip": "None", "ss_max_token_length": "None", "ss_seed": "None",
    "ss_lowram": "False", "ss_noise_offset": "None", "ss_multires_noise_iterations": "None",
    "ss_multires_noise_discount": "0.3", "ss_adaptive_noise_scale": "None", "ss_zero_terminal_snr": "False",
    "ss_training_comment": "None", "ss_sd_scripts_commit_hash": "(unknown)", "ss_max_grad_norm": "1.0",
    "ss_caption_dropout_rate": "0.0", "ss_caption_dropout_every_n_epochs": "0", "ss_caption_tag_dropout_rate": "0.0",
    "ss_face_crop_aug_range": "None", "ss_prior_loss_weight": "1.0", "ss_min_snr_gamma": "None",
    "ss_scale_weight_norms": "None", "ss_ip_noise_gamma": "None", "ss_debiased_estimation": "False",
    "ss_noise_offset_random_strength": "False", "ss_ip_noise_gamma_random_strength": "False", "ss_loss_type": "l2",
    "ss_huber_schedule": "snr", "ss_huber_scale": "1.0", "ss_huber_c": "0.1", "ss_fp8_base": "False",
    "ss_fp8_base_unet": "False", "ss_validation_seed": "None", "ss_validation_split": "0.0",
    "ss_max_validation_steps": "None", "ss_validate_every_n_epochs": "None", "ss_validate_every_n_steps": "None",
    "ss_resize_interpolation": "None", "ss_gradient_checkpointing": "False", "ss_gradient_accumulation_steps": "1",
    "ss_lr_warmup_steps": "0", "ss_lr_scheduler": "constant", "ss_mixed_precision": "no", "ss_cache_latents": "False",
    "ss_color_aug": "False", "ss_flip_aug": "False", "ss_random_crop": "False", "ss_shuffle_caption": "False",
    "ss_keep_tokens": "0", "ss_reg_dataset_dirs": "{}", "ss_dataset_dirs": "{}", "ss_bucket_info": "null",
    "ss_num_reg_images": "0", "ss_session_id": "0",
}
# flux_train_network.py's update_metadata, with its argument defaults (library/flux_train_utils.py, train_util.py).
SD_SCRIPTS_FLUX_OFF = {
    "ss_model_type": "flux", "ss_apply_t5_attn_mask": "False", "ss_weighting_scheme": "uniform",
    "ss_logit_mean": "0.0", "ss_logit_std": "1.0", "ss_mode_scale": "1.29", "ss_guidance_scale": "3.5",
    "ss_timestep_sampling": "sigma", "ss_sigmoid_scale": "1.0", "ss_model_prediction_type": "sigma_scaled",
    "ss_discrete_flow_shift": "3.0",
}

FACT_KEYS = {
    # fact -> ss_* key (None: only used for modelspec.* or computed; bucket_reso_steps and train_unet_only are facts
    # sd-scripts never writes as keys)
    "steps": "ss_steps", "max_train_steps": "ss_max_train_steps", "epoch": "ss_epoch", "epochs": "ss_num_epochs",
    "num_train_images": "ss_num_train_images", "num_reg_images": "ss_num_reg_images",
    "num_validation_images": "ss_num_validation_images",
    "num_batches_per_epoch": "ss_num_batches_per_epoch", "batch_size": "ss_batch_size_per_device",
    "gradient_accumulation_steps": "ss_gradient_accumulation_steps", "resolution": "ss_resolution",
    "tag_frequency": "ss_tag_frequency", "dataset_dirs": "ss_dataset_dirs", "trigger_phrase": None,
    "training_started_at": "ss_training_started_at", "training_finished_at": "ss_training_finished_at",
    "learning_rate": "ss_learning_rate", "unet_lr": "ss_unet_lr", "text_encoder_lr": "ss_text_encoder_lr",
    "optimizer": "ss_optimizer", "lr_scheduler": "ss_lr_scheduler", "mixed_precision": "ss_mixed_precision",
    "lr_warmup_steps": "ss_lr_warmup_steps", "seed": "ss_seed", "clip_skip": "ss_clip_skip",
    "keep_tokens": "ss_keep_tokens", "max_bucket_reso": "ss_max_bucket_reso", "min_bucket_reso": "ss_min_bucket_reso",
    "bucket_reso_steps": None, "noise_offset": "ss_noise_offset", "min_snr_gamma": "ss_min_snr_gamma",
    "multires_noise_iterations": "ss_multires_noise_iterations",
    "multires_noise_discount": "ss_multires_noise_discount", "zero_terminal_snr": "ss_zero_terminal_snr",
    "v_parameterization": None, "validation_split": "ss_validation_split", "validation_seed": "ss_validation_seed",
    "caption_dropout_rate": "ss_caption_dropout_rate", "prior_loss_weight": "ss_prior_loss_weight",
    "max_grad_norm": "ss_max_grad_norm", "shuffle_caption": "ss_shuffle_caption", "flip_aug": "ss_flip_aug",
    "enable_bucket": "ss_enable_bucket", "cache_latents": "ss_cache_latents",
    "gradient_checkpointing": "ss_gradient_checkpointing", "train_unet_only": None,
    "bucket_no_upscale": "ss_bucket_no_upscale", "sd_model_name": "ss_sd_model_name", "vae_name": "ss_vae_name",
    "session_id": "ss_session_id", "sd_model_hash": "ss_sd_model_hash", "new_sd_model_hash": "ss_new_sd_model_hash",
    "network_module": "ss_network_module", "network_args": "ss_network_args",
    "min_timestep": None, "max_timestep": None,
    "comment": "ss_training_comment", "title": None, "description": None, "author": None,
    "total_batch_size": "ss_total_batch_size", "bucket_info": "ss_bucket_info",
    "reg_dataset_dirs": "ss_reg_dataset_dirs",
    **{k[3:]: k for k in SD_SCRIPTS_OFF if k[3:] not in ("dataset_dirs", "reg_dataset_dirs")},
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
    meta: dict[str, str] = dict(SD_SCRIPTS_OFF)
    meta.update({
        "ss_base_model_version": BASE_MODEL_VERSION[family],
        "ss_v2": "False",
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(int(rank)),
        "ss_network_alpha": str(float(alpha)),
        "ss_output_name": output_name,
        "ss_sd_model_name": model_name,
        "ss_training_started_at": str(started),
    })
    if family == "flux":
        meta.update(SD_SCRIPTS_FLUX_OFF)
    if "total_batch_size" not in facts and "batch_size" in facts:
        # sd-scripts: train_batch_size x processes (one here) x gradient_accumulation_steps
        facts["total_batch_size"] = int(facts["batch_size"]) * int(facts.get("gradient_accumulation_steps") or 1)
    if "tag_frequency" not in facts:
        meta["ss_tag_frequency"] = "{}"
    for fact, value in facts.items():
        key = FACT_KEYS[fact]
        if key is None or value is None:
            continue
        if fact == "resolution":
            meta[key] = str(_resolution(value))  # sd-scripts writes "(512, 512)"
        elif fact == "text_encoder_lr" and isinstance(value, (list, tuple)):
            # networks.lora has no per-encoder learning rates, so train_network.py writes the first value: one
            # number, which tools parse with float().
            meta[key] = str(float(value[0])) if value else "None"
        elif fact == "network_args" and not value:
            continue  # sd-scripts writes ss_network_args only when network_args were given
        else:
            meta[key] = _text(value)
    width, height = _resolution(facts.get("resolution", 512 if family == "sd15" else 1024))
    meta.update({
        "modelspec.sai_model_spec": MODELSPEC_VERSION,
        "modelspec.architecture": MODELSPEC_ARCH[family],
        "modelspec.implementation": MODELSPEC_IMPL[family],
        "modelspec.title": str(facts.get("title") or output_name),
        "modelspec.resolution": f"{width}x{height}",
        "modelspec.date": datetime.datetime.fromtimestamp(int(started)).isoformat(),
        "modelspec.prediction_type": "v" if facts.get("v_parameterization") else "epsilon",
        "modelspec.implementation_version": f"cloudlora/{_version()}",
    })
    lo, hi = facts.get("min_timestep"), facts.get("max_timestep")
    if lo is not None and hi is not None and (int(lo), int(hi)) != (0, 1000):
        meta["modelspec.timestep_range"] = f"{int(lo)},{int(hi)}"
    if family == "sd15" and facts.get("clip_skip") and int(facts["clip_skip"]) > 1:
        meta["modelspec.encoder_layer"] = str(int(facts["clip_skip"]))
    for fact in ("trigger_phrase", "description", "author"):
        if facts.get(fact):
            meta[f"modelspec.{fact}"] = str(facts[fact])
    return meta


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("cloud-lora-trainer")
    except Exception:  # noqa: BLE001 - a bare clone has no installed distribution
        return "dev"


def safetensors_hashes(tensors, metadata: Mapping[str, str]) -> tuple[str, str]:
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


def model_hashes(path: Path | str, sha256: str = "") -> tuple[str, str]:
    """(ss_sd_model_hash, ss_new_sd_model_hash) of a base checkpoint: sd-scripts' `train_util.model_hash` (SHA-256
    of 64 KiB at offset 1 MiB, 8 hex digits: A1111's old short hash) and `calculate_sha256` (the whole file).

    sha256: the file's SHA-256 when it is already known (the store's manifest has it), so a 7 GB SDXL checkpoint
    is not read twice. A diffusers folder has neither hash (sd-scripts writes "IsADirectory"; we write nothing).
    """
    path = Path(path)
    if not path.is_file():
        return "", ""
    with open(path, "rb") as f:
        f.seek(0x100000)
        short = hashlib.sha256(f.read(0x10000)).hexdigest()[:8]
        if not sha256:
            full = hashlib.sha256()
            f.seek(0)
            for chunk in iter(lambda: f.read(1 << 20), b""):
                full.update(chunk)
            sha256 = full.hexdigest()
    return short, sha256
