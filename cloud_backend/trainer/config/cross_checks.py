"""The rules between keys of a Kohya TOML: each value alone is valid (values.py), these catch the combinations
sd-scripts would reject or silently misread (bucket bounds around the resolution, optimizer and scheduler pairs,
caching that cannot hold), plus the network_args rules (features.py) and FLUX.1's own (flux_options.py).
"""
from __future__ import annotations

from . import caption_options, features, flux_options


def cross_checks(vals: dict, given: set, family: str | None, errors: list, warnings: list) -> None:
    """Appends to errors / warnings what the values break together (each value alone already passed its option's
    check); may settle a value another implies (use_8bit_adam -> optimizer_type). Runs the network_args and FLUX.1
    rules too."""
    if vals["min_bucket_reso"] > vals["max_bucket_reso"]:
        errors.append(f"min_bucket_reso = {vals['min_bucket_reso']} is larger than max_bucket_reso = "
                      f"{vals['max_bucket_reso']}")
    if vals["enable_bucket"] and isinstance(vals["resolution"], str) and "," in vals["resolution"]:
        w, h = (int(x) for x in vals["resolution"].split(","))
        if min(w, h) < vals["min_bucket_reso"] or max(w, h) > vals["max_bucket_reso"]:
            errors.append(f"resolution = \"{w},{h}\" must lie between min_bucket_reso = {vals['min_bucket_reso']} and "
                          f"max_bucket_reso = {vals['max_bucket_reso']}")
    steps = vals["bucket_reso_steps"]
    if steps % 8:
        errors.append(f"bucket_reso_steps = {steps} must be a multiple of 8 (the VAE downsamples by 8)")
    if vals["min_timestep"] >= vals["max_timestep"]:
        errors.append(f"min_timestep = {vals['min_timestep']} must be below max_timestep = {vals['max_timestep']}")
    te = vals["text_encoder_lr"]
    if isinstance(te, list) and len(te) == 2 and family == "sd15":
        errors.append(f"text_encoder_lr = {te}: SD 1.5 has one text encoder; give one number")
    if vals["use_8bit_adam"]:
        if "optimizer_type" in given and vals["optimizer_type"] != "AdamW8bit":
            errors.append(f"use_8bit_adam = true contradicts optimizer_type = \"{vals['optimizer_type']}\"; keep one")
        vals["optimizer_type"] = "AdamW8bit"
    if vals["lr_scheduler"] == "adafactor" and vals["optimizer_type"] != "Adafactor":
        errors.append("lr_scheduler = \"adafactor\" works only with optimizer_type = \"Adafactor\"")
    if vals["optimizer_type"] == "Prodigy" and vals["learning_rate"] < 0.1:
        warnings.append(f"optimizer_type = \"Prodigy\" finds the step size itself: learning_rate (and unet_lr) are "
                        f"usually 1, not {vals['learning_rate']:g}")
    if vals["network_alpha"] > vals["network_dim"] * 4:
        warnings.append(f"network_alpha = {vals['network_alpha']:g} is far above network_dim = {vals['network_dim']}: "
                        "the effective lr is multiplied by alpha/dim")
    if vals["cache_text_encoder_outputs"]:
        why = ("the text encoders train" if not vals["network_train_unet_only"] else
               "captions change every step (shuffle_caption / caption dropout)"
               if (vals["shuffle_caption"] or vals["caption_dropout_rate"] or vals["caption_tag_dropout_rate"]
                   or vals["caption_dropout_every_n_epochs"]) else "")
        if why and "cache_text_encoder_outputs" in given:
            warnings.append(f"cache_text_encoder_outputs is switched off because {why}")
    if vals["max_train_epochs"] and "max_train_steps" in given:
        warnings.append(f"max_train_epochs = {vals['max_train_epochs']} wins over max_train_steps (as in sd-scripts)")
    if vals["log_with"] != "tensorboard":
        warnings.append(f"log_with = \"{vals['log_with']}\": only TensorBoard events are written (no wandb)")
    features.cross_checks(vals, given, family, errors, warnings)
    if family == "sdxl" and "clip_skip" in given and vals["clip_skip"] != 1:
        warnings.append("clip_skip is ignored for SDXL (it always uses the penultimate text-encoder layer)")
    flux_options.cross_checks(vals, given, family, errors, warnings)
    caption_options.cross_checks(vals, given, family, errors, warnings)
