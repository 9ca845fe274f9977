"""The model channel may hold a diffusers folder one level down, also as a link (the local store links a fetched
folder into input/data/model/ and pathlib's rglob does not follow links)."""
from __future__ import annotations

import json

from cloudlora_backend.trainer.__main__ import find_model


def test_a_linked_diffusers_folder_in_the_model_channel_is_found(tmp_path):
    folder = tmp_path / "store" / "models" / "tiny" / "tiny-diffusers"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    channel = tmp_path / "input" / "data" / "model"
    channel.mkdir(parents=True)
    (channel / "tiny-diffusers").symlink_to(folder, target_is_directory=True)
    assert find_model(channel) == channel / "tiny-diffusers"
