"""A checkpoint's family is read from its safetensors header alone: key names first, shapes as the tiebreaker."""
from __future__ import annotations

import json
import struct

import pytest

from cloudlora_backend.trainer.model.family import (
    NotSafetensorsError,
    detect_diffusers_folder,
    detect_family,
    detect_path,
    read_safetensors_header,
)


def write_safetensors(path, shapes: dict, metadata: dict | None = None):
    """A valid safetensors file with zero-filled float16 tensors of the given shapes."""
    header, offset = {}, 0
    for key, shape in shapes.items():
        n = 2
        for s in shape:
            n *= s
        header[key] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return path


UNET = "model.diffusion_model."
SD15 = {
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
    UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
}
SD2 = {
    "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": (3072, 1024),
    UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
}
SDXL = {
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
    "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight": (3840, 1280),
    UNET + "label_emb.0.0.weight": (1280, 2816),
}


@pytest.mark.parametrize("shapes, family", [(SD15, "sd15"), (SD2, "sd2"), (SDXL, "sdxl")])
def test_a_checkpoint_header_names_its_family(tmp_path, shapes, family):
    assert detect_family(shapes) == family  # real shapes, as {key: shape}
    path = write_safetensors(tmp_path / "model.safetensors", {k: (8, 4) for k in shapes}, {"format": "pt"})
    header = read_safetensors_header(path)
    assert header["__metadata__"] == {"format": "pt"}
    assert detect_family(header) == family
    assert detect_path(path) == family


def test_tiny_widths_detect_by_key_names_not_by_shape():
    tiny_sd15 = {k: (8, 4) for k in SD15}  # the real layout with tiny widths, like the test models
    tiny_sdxl = {k: (8, 4) for k in SDXL}
    tiny_sd2 = {k: (8, 4) for k in SD2}
    assert detect_family(tiny_sd15) == "sd15"
    assert detect_family(tiny_sdxl) == "sdxl"
    assert detect_family(tiny_sd2) == "sd2"


@pytest.mark.parametrize("width, family", [(768, "sd15"), (1024, "sd2"), (2048, "sdxl"), (99, "unknown")])
def test_a_unet_only_file_is_told_apart_by_its_cross_attention_width(width, family):
    keys = {UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, width)}
    assert detect_family(keys) == family


def test_a_lora_or_random_file_is_unknown():
    assert detect_family({"lora_unet_down_blocks_0.lora_down.weight": (4, 320)}) == "unknown"
    assert detect_family({}) == "unknown"


def test_a_pickle_checkpoint_is_refused_with_a_clear_message(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x02}q\x00(X\x05\x00\x00\x00state" + b"\0" * 64)
    with pytest.raises(NotSafetensorsError, match="model.ckpt is not a safetensors file"):
        read_safetensors_header(ckpt)
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"abc")
    with pytest.raises(NotSafetensorsError, match="only 3 bytes"):
        read_safetensors_header(short)
    bad_json = tmp_path / "bad.safetensors"
    bad_json.write_bytes(struct.pack("<Q", 4) + b"nope")
    with pytest.raises(NotSafetensorsError, match="not JSON"):
        read_safetensors_header(bad_json)


def test_the_header_is_read_without_the_tensors(tmp_path):
    path = write_safetensors(tmp_path / "big.safetensors", {"x": (4096, 4096)})  # 32 MiB of data
    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]
    header = read_safetensors_header(path)
    assert header["x"]["shape"] == [4096, 4096]
    assert header_len < 200


def _folder(tmp_path, index=None, unet=None, te=None, te2=False):
    root = tmp_path / "model"
    (root / "unet").mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps(index or {"_class_name": "StableDiffusionPipeline"}))
    (root / "unet" / "config.json").write_text(json.dumps(unet or {}))
    if te is not None:
        (root / "text_encoder").mkdir()
        (root / "text_encoder" / "config.json").write_text(json.dumps(te))
    if te2:
        (root / "text_encoder_2").mkdir()
    return root


def test_a_diffusers_folder_is_detected_from_its_configs(tmp_path):
    assert detect_diffusers_folder(_folder(tmp_path / "a", unet={"cross_attention_dim": 768})) == "sd15"
    assert detect_diffusers_folder(_folder(tmp_path / "b", unet={"cross_attention_dim": 1024})) == "sd2"
    assert detect_path(_folder(tmp_path / "c", unet={"cross_attention_dim": 2048,
                                                      "addition_embed_type": "text_time"})) == "sdxl"
    assert detect_diffusers_folder(_folder(tmp_path / "d", index={"_class_name": "StableDiffusionXLPipeline"})) == "sdxl"
    tiny = _folder(tmp_path / "e", unet={"cross_attention_dim": 32}, te={"hidden_act": "quick_gelu"})
    assert detect_diffusers_folder(tiny) == "sd15"
    tiny2 = _folder(tmp_path / "f", unet={"cross_attention_dim": 32}, te={"hidden_act": "gelu"})
    assert detect_diffusers_folder(tiny2) == "sd2"
