"""The shipped diffusers-format architecture configs (arch/), and which one fits a checkpoint.

`from_single_file(..., config=<folder>, local_files_only=True)` only works offline when it is given a local config
folder, so the real SD1.5 (runwayml v1-5) and SDXL base 1.0 configs ship with the trainer, plus tiny variants with
the same layer layout. Pure Python: no torch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

ARCH_ROOT = Path(__file__).resolve().parent / "arch"
FAMILIES = ("sd15", "sdxl")

# The A1111 key whose width tells a full-size UNet from a tiny one, and the text encoders' embedding keys.
_UNET_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
_TEXT_WIDTH_KEYS = {
    "sd15": [("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", "text_encoder")],
    "sdxl": [("conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight", "text_encoder"),
             ("conditioner.embedders.1.model.token_embedding.weight", "text_encoder_2")],
}


def arch_dir(family: str, tiny: bool = False) -> Path:
    if family not in FAMILIES:
        raise ValueError(f"no shipped config for family {family!r}; expected one of {', '.join(FAMILIES)}")
    return ARCH_ROOT / (f"{family}-tiny" if tiny else family)


def models_from_configs(folder: Path, family: str):
    """(unet, vae, text_encoders) built from a shipped config folder, default-initialised with torch's current
    default dtype, device and RNG (trainer/tiny.py seeds them for the tests; bench/model/full_size.py picks dtype and
    device). The text encoders: CLIP-L, plus OpenCLIP bigG with its projection for SDXL."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
    encoders = [CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))]
    if family == "sdxl":
        encoders.append(CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2")))
    return unet, vae, encoders


def read_config(folder: Path, sub: str) -> dict:
    name = "scheduler_config.json" if sub == "scheduler" else "config.json"
    return json.loads((folder / sub / name).read_text(encoding="utf-8"))


def pick_arch_dir(family: str, shapes: Mapping[str, tuple]) -> Path | None:
    """The shipped config folder whose widths match the checkpoint's tensor shapes, or None if neither fits.

    `shapes` is {A1111 key: shape}. Only widths are compared; keys missing from the file are not held against a
    config (a pruned file may lack its text encoder; the loader reports what is really missing).
    """
    for tiny in (False, True):
        folder = arch_dir(family, tiny)
        unet = read_config(folder, "unet")
        ok = True
        conv_in = shapes.get(_UNET_CONV_IN)
        if conv_in is not None and int(conv_in[0]) != int(unet["block_out_channels"][0]):
            ok = False
        for key, sub in _TEXT_WIDTH_KEYS[family]:
            shape = shapes.get(key)
            if shape is not None and int(shape[-1]) != int(read_config(folder, sub)["hidden_size"]):
                ok = False
        if ok:
            return folder
    return None
