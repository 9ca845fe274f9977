"""The single-file writer is the exact inverse of diffusers' from_single_file (checked fully offline)."""
from __future__ import annotations

import pytest
import torch

from cloudlora_backend.trainer.model import archs, family
from cloudlora_backend.trainer import tiny
from cloudlora_backend.trainer.model.singlefile import write_single_file
from cloudlora_backend.trainer.data.tokenizer import tokenizers_for


def _assert_same(model_a, model_b, what):
    a, b = model_a.state_dict(), model_b.state_dict()
    assert set(a) == set(b), f"{what}: key sets differ: {sorted(set(a) ^ set(b))[:5]}"
    for key in a:
        assert torch.equal(a[key], b[key]), f"{what}: {key} differs after the round trip"


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_a_written_checkpoint_loads_back_through_from_single_file_with_identical_tensors(arch, tmp_path):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    unet, vae, encoders = tiny.build_tiny_models(arch, seed=3)
    path = write_single_file(tmp_path / f"{arch}.safetensors", arch, unet, vae, encoders)
    assert family.detect_path(path) == arch

    cls = StableDiffusionXLPipeline if arch == "sdxl" else StableDiffusionPipeline
    toks = tokenizers_for(arch)
    extra = {"tokenizer": toks[0], **({"tokenizer_2": toks[1]} if arch == "sdxl" else {"safety_checker": None})}
    # config= a local folder + local_files_only: works with HF_HUB_OFFLINE=1 (set in conftest), no hub involved.
    pipe = cls.from_single_file(str(path), config=str(archs.arch_dir(arch, tiny=True)), local_files_only=True,
                                **extra)
    _assert_same(unet, pipe.unet, "unet")
    _assert_same(vae, pipe.vae, "vae")
    _assert_same(encoders[0], pipe.text_encoder, "text_encoder")
    if arch == "sdxl":
        _assert_same(encoders[1], pipe.text_encoder_2, "text_encoder_2")


def test_the_sdxl_writer_uses_the_openclip_layout_with_fused_attention(tmp_path):
    unet, vae, encoders = tiny.build_tiny_models("sdxl")
    path = write_single_file(tmp_path / "xl.safetensors", "sdxl", unet, vae, encoders)
    shapes = {k: v["shape"] for k, v in family.read_safetensors_header(path).items() if k != "__metadata__"}
    root = "conditioner.embedders.1.model."
    width = encoders[1].config.hidden_size
    assert shapes[root + "transformer.resblocks.31.attn.in_proj_weight"] == [3 * width, width]
    assert shapes[root + "text_projection"] == [width, encoders[1].config.projection_dim]
    assert "conditioner.embedders.0.transformer.text_model.encoder.layers.11.self_attn.q_proj.weight" in shapes
    assert "first_stage_model.decoder.up.3.block.2.conv1.weight" in shapes
    assert "model.diffusion_model.label_emb.0.0.weight" in shapes
    assert not any(k.startswith(("unet.", "vae.", "text_encoder")) for k in shapes)


def _data(path):
    raw = path.read_bytes()
    return raw[8 + int.from_bytes(raw[:8], "little"):]


@pytest.mark.parametrize("arch,low,high", [("sd15", 9e6, 14e6), ("sdxl", 25e6, 40e6)])
def test_tiny_checkpoints_are_small_deterministic_and_keep_the_real_layer_layout(arch, low, high, tmp_path):
    a = tiny.make_tiny_checkpoint(arch, tmp_path / "a.safetensors", seed=0)
    b = tiny.make_tiny_checkpoint(arch, tmp_path / "b.safetensors", seed=0)
    c = tiny.make_tiny_checkpoint(arch, tmp_path / "c.safetensors", seed=1)
    assert low < a.stat().st_size < high
    # Same header (as JSON: safetensors orders metadata keys arbitrarily) and byte-identical tensor data.
    assert family.read_safetensors_header(a) == family.read_safetensors_header(b)
    assert _data(a) == _data(b)
    assert _data(a) != _data(c)
    assert tiny.is_current(a, arch) and not tiny.is_current(c, arch)
    # Same key set as a checkpoint written from the full-size architecture (built on the meta device).
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    from cloudlora_backend.trainer.model.singlefile import unet_to_ldm

    folder = archs.arch_dir(arch)
    with init_empty_weights():
        full = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
    # Only the resnet shortcuts may differ: they exist where a block changes width, and the tiny widths change
    # at other places than the real ones. Attention (LoRA) and block layout are identical.
    full_keys = {k for k in unet_to_ldm(full.state_dict(), full.config) if "skip_connection" not in k}
    tiny_keys = {k for k in family.read_safetensors_header(a)
                 if k.startswith("model.diffusion_model.") and "skip_connection" not in k}
    assert tiny_keys == full_keys


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_full_size_models_written_by_us_convert_back_through_diffusers_own_converters(arch):
    """The real SD1.5 / SDXL layouts, shape for shape, on the meta device (no weights allocated)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint, convert_open_clip_checkpoint)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from cloudlora_backend.trainer.model.singlefile import to_single_file_state_dict

    folder = archs.arch_dir(arch)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        encoders = [CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))]
        if arch == "sdxl":
            encoders.append(CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2")))
    ldm = to_single_file_state_dict(arch, unet, vae, encoders)

    def shapes(sd):
        return {k: tuple(v.shape) for k, v in sd.items()}

    assert shapes(convert_ldm_unet_checkpoint(ldm, dict(unet.config))) == shapes(unet.state_dict())
    assert shapes(convert_ldm_vae_checkpoint(ldm, dict(vae.config))) == shapes(vae.state_dict())
    clip = {k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(ldm).items()}
    clip.pop("embeddings.position_ids")  # written for A1111; transformers keeps it as a non-persistent buffer
    assert shapes(clip) == shapes(encoders[0].state_dict())
    if arch == "sdxl":
        bigg = convert_open_clip_checkpoint(encoders[1], ldm, prefix="conditioner.embedders.1.model.")
        assert shapes(bigg) == shapes(encoders[1].state_dict())
