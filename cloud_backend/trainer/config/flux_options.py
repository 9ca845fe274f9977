"""FLUX.1's config keys (sd-scripts' flux_train_network.py names), its family defaults with their reasons, and the
checks that keep SD-only settings out of a Flux config and Flux-only ones out of an SD config. Pure data + Python:
schema.py adds these to its table, cross_checks.py runs `cross_checks`.

Defaults and their sources:
- timestep_sampling "shift", discrete_flow_shift 3.1582, model_prediction_type "raw", guidance_scale 1.0:
  sd-scripts docs/flux_train_network.md, "Recommended Settings" (its argparse defaults are sigma / 3.0 /
  sigma_scaled / 3.5, which the same guide recommends against for FLUX.1-dev).
- t5xxl_max_token_length 512: sd-scripts' default for dev (256 for schnell), FLUX.1-dev's own length.
- network_dim 16, network_alpha 16, learning_rate 1e-4, UNet (transformer) only: ai-toolkit's FLUX.1 LoRA example
  (linear 16, linear_alpha 16, lr 1e-4, text encoder not trained); sd-scripts trains the transformer only too.
- fp8_base true, gradient_checkpointing, cached latents and text-encoder outputs, batch 1: what lets FLUX.1-dev
  train on a 24 GB GPU (sd-scripts' guide: "24GB VRAM: basic settings work fine" with --fp8_base).
"""
from __future__ import annotations

from .option import Option

TIMESTEP_SAMPLING = ("uniform", "sigmoid", "shift", "flux_shift")
PREDICTION_TYPES = ("raw", "additive", "sigma_scaled")
WEIGHTING = ("none", "uniform", "sigma_sqrt", "cosmap")

_O = Option
OPTIONS: list[Option] = [
    _O("clip_l", "str", "", group="model_arguments", doc="FLUX.1's CLIP-L file; the job's clip_l channel replaces it"),
    _O("t5xxl", "str", "", group="model_arguments", doc="FLUX.1's T5-XXL file; the job's t5xxl channel replaces it"),
    _O("ae", "str", "", group="model_arguments", doc="FLUX.1's autoencoder; the job's ae channel replaces it"),
    _O("timestep_sampling", "str", "shift", choices=TIMESTEP_SAMPLING,
       doc="FLUX.1: how sigma is drawn per image (sd-scripts' 'sigma' sampling is not implemented)"),
    _O("sigmoid_scale", "float", 1.0, min=0.0, min_exclusive=True, max=100.0, doc="FLUX.1: scale of the sigmoid's input"),
    _O("discrete_flow_shift", "float", 3.1582, min=0.0, min_exclusive=True, max=100.0,
       doc="FLUX.1: the shift of timestep_sampling = \"shift\""),
    _O("model_prediction_type", "str", "raw", choices=PREDICTION_TYPES, doc="FLUX.1: how the prediction is read"),
    _O("weighting_scheme", "str", "none", choices=WEIGHTING, doc="FLUX.1: loss weights for sigma_scaled predictions"),
    _O("guidance_scale", "float", 1.0, min=0.0, max=100.0, doc="FLUX.1: the guidance embedding's input in training"),
    _O("t5xxl_max_token_length", "int", 512, min=8, max=512, doc="FLUX.1: T5 tokens per caption"),
    _O("apply_t5_attn_mask", "bool", False, doc="FLUX.1: mask T5 padding in the encoder and the transformer"),
    _O("model_type", "str", "flux", "default", choices=("flux",), doc="Chroma is not supported"),
    _O("blocks_to_swap", "int", 0, "default",
       doc="block swapping is not implemented: use fp8_base on 24 GB, or an instance with more GPU memory"),
    _O("split_mode", "bool", False, "default", doc="deprecated in sd-scripts (use an instance with enough memory)"),
    _O("mem_eff_save", "bool", False, "ignored"),
    _O("logit_mean", "float", 0.0, "ignored", doc="only for sd-scripts' 'sigma' timestep sampling"),
    _O("logit_std", "float", 1.0, "ignored", doc="only for sd-scripts' 'sigma' timestep sampling"),
    _O("mode_scale", "float", 1.29, "ignored", doc="only for sd-scripts' 'sigma' timestep sampling"),
]
FLUX_ONLY = {o.name for o in OPTIONS} | {"fp8_base"}

DEFAULTS = {
    "resolution": "1024,1024", "network_module": "networks.lora_flux",
    "network_dim": 16, "network_alpha": 16.0,
    "learning_rate": 1e-4, "unet_lr": 1e-4, "text_encoder_lr": 0.0,
    "network_train_unet_only": True,
    "optimizer_type": "AdamW", "lr_scheduler": "cosine", "lr_warmup_steps": 0.05,
    "max_train_steps": 1000, "train_batch_size": 1,
    "mixed_precision": "bf16", "cache_latents": True, "cache_text_encoder_outputs": True,
    "gradient_checkpointing": True, "fp8_base": True,
    "min_snr_gamma": 0.0, "noise_offset": 0.0,
    "enable_bucket": True, "min_bucket_reso": 512, "max_bucket_reso": 2048, "bucket_reso_steps": 64,
    "bucket_no_upscale": True, "caption_extension": ".txt", "save_precision": "bf16", "seed": 42,
    **{o.name: o.default for o in OPTIONS if o.support == "yes"},
}

WHY = {
    "network_module": "sd-scripts' FLUX.1 LoRA (networks.lora is read as the same)",
    "resolution": "FLUX.1 was trained at 1024 px; 512 trains about 4x faster",
    "network_dim": "16 with alpha 16, as ai-toolkit's FLUX.1 example",
    "network_alpha": "alpha = dim: scale 1",
    "text_encoder_lr": "0: the text encoders are not trained for FLUX.1",
    "network_train_unet_only": "the transformer only, as sd-scripts and ai-toolkit train FLUX.1",
    "train_batch_size": "fits a 24 GB A10G at 1024 px with fp8_base",
    "cache_text_encoder_outputs": "encode each caption once; then CLIP-L and T5-XXL leave the GPU",
    "gradient_checkpointing": "needed for 1024 px on 24-48 GB",
    "min_snr_gamma": "0: min-SNR weighting is for DDPM models, not flow matching",
    "noise_offset": "0: not used for flow matching",
    "save_precision": "bf16, as sd-scripts saves FLUX.1 LoRAs",
    "max_bucket_reso": "aspect-ratio buckets up to 2048 px",
    "fp8_base": "the frozen transformer stored in fp8 (11.9 GB instead of 23.8): fits 24 GB; false on 40 GB+",
    "timestep_sampling": "sd-scripts' recommended FLUX.1 setting (sigmoid, then shifted)",
    "discrete_flow_shift": "sd-scripts' recommended value for FLUX.1-dev",
    "model_prediction_type": "the prediction is the velocity itself (sd-scripts' recommendation)",
    "guidance_scale": "FLUX.1-dev is guidance-distilled: train with 1.0 (sd-scripts' guide)",
    "t5xxl_max_token_length": "FLUX.1-dev's T5 length (256 for schnell)",
}

SHOWN = ["fp8_base", "timestep_sampling", "discrete_flow_shift", "sigmoid_scale", "model_prediction_type",
         "guidance_scale", "t5xxl_max_token_length", "apply_t5_attn_mask"]
HIDDEN = {"clip_skip", "min_snr_gamma", "noise_offset", "text_encoder_lr"}  # keys default_toml leaves out for Flux
_SD_ONLY = {"v_parameterization": False, "clip_skip": 1, "min_snr_gamma": 0.0, "noise_offset": 0.0,
            "min_timestep": 0, "max_timestep": 1000}


def cross_checks(vals: dict, given: set, family: str | None, errors: list, warnings: list) -> None:
    if family != "flux":
        if vals["network_module"] == "networks.lora_flux":
            errors.append("network_module = \"networks.lora_flux\" is FLUX.1's; use \"networks.lora\" here")
        for key in sorted(FLUX_ONLY & given):
            if key == "fp8_base" and vals[key]:
                errors.append("fp8_base = true is for FLUX.1 only (an SD UNet trains in bf16/fp16); remove it")
            elif key != "fp8_base":
                warnings.append(f"{key} applies to FLUX.1 only; it is ignored for this family")
        return
    for key, default in _SD_ONLY.items():
        if key in given and vals[key] != default:
            warnings.append(f"{key} is a Stable Diffusion setting; FLUX.1's flow matching ignores it")
    if not vals["network_train_unet_only"]:
        errors.append("network_train_unet_only = false: training a text-encoder LoRA for FLUX.1 is not supported "
                      "(sd-scripts and ai-toolkit train the transformer only); set it to true")
    if vals["num_class_images"]:
        errors.append("num_class_images: generating class images with FLUX.1 is not supported; give the class "
                      "images themselves (the job's reg channel / reg_data_dir) and remove num_class_images")
    w, h = (int(x) for x in str(vals["resolution"]).split(","))
    if w % 16 or h % 16:
        errors.append(f"resolution = \"{w},{h}\": FLUX.1 packs 2x2 latent patches, so each side must be a multiple "
                      "of 16")
    if vals["bucket_reso_steps"] % 16:
        errors.append(f"bucket_reso_steps = {vals['bucket_reso_steps']} must be a multiple of 16 for FLUX.1")
    if vals["weighting_scheme"] not in ("none", "uniform") and vals["model_prediction_type"] != "sigma_scaled":
        warnings.append(f"weighting_scheme = \"{vals['weighting_scheme']}\" only weights sigma_scaled predictions; "
                        "it is ignored with model_prediction_type = \"" + vals["model_prediction_type"] + "\"")
