"""Base models load offline from A1111 single files (.safetensors/.ckpt) or diffusers folders, with an optional VAE."""
from __future__ import annotations

import socket

import pytest
import torch
from safetensors.torch import load_file, save_file

from cloudlora_backend.trainer.model import family, load as models, singlefile
from cloudlora_backend.trainer import tiny
from cloudlora_backend.trainer.model.load import ModelLoadError, build_pipeline, load_components

# Runs again under every transformers of TRANSFORMERS_VARIANTS (tools/test.sh): text-encoder LoRA and loading.
pytestmark = pytest.mark.transformers_matrix


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: loading must never need the hub."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_a_tiny_checkpoint_is_detected_loaded_offline_and_samples(arch, request, no_network):
    path = request.getfixturevalue(f"tiny_{arch}_path")
    assert family.detect_path(path) == arch
    c = load_components(path)
    assert (c.family, c.tiny, c.model_name, c.prediction_type) == (arch, True, path.name, "epsilon")
    assert c.config_dir.endswith(f"{arch}-tiny")
    assert len(c.text_encoders) == len(c.tokenizers) == (2 if arch == "sdxl" else 1)
    sched = c.noise_scheduler.config
    assert (type(c.noise_scheduler).__name__, sched.beta_start, sched.beta_end, sched.beta_schedule,
            sched.num_train_timesteps) == ("DDPMScheduler", 0.00085, 0.012, "scaled_linear", 1000)
    assert not any(p.requires_grad for p in c.unet.parameters())
    # The weights are the file's, not a fresh init.
    state = load_file(str(path))
    key = "model.diffusion_model.input_blocks.0.0.weight"
    assert torch.equal(c.unet.conv_in.weight, state[key].float())
    image = build_pipeline(c)("a photo of a cat", num_inference_steps=2, height=64, width=64,
                              output_type="np", generator=torch.Generator().manual_seed(0)).images[0]
    assert image.shape == (64, 64, 3) and float(image.std()) > 0


def test_a_ckpt_pickle_loads_with_weights_only_and_gives_the_same_weights(tmp_path, tiny_sd15_path):
    state = load_file(str(tiny_sd15_path))
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": state, "global_step": 1000, "epoch": 3}, ckpt)
    from_ckpt = load_components(ckpt)
    from_st = load_components(tiny_sd15_path)
    assert from_ckpt.family == "sd15"
    for a, b in zip(from_ckpt.text_encoders[0].state_dict().values(), from_st.text_encoders[0].state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(from_ckpt.vae.decoder.conv_out.weight, from_st.vae.decoder.conv_out.weight)


def test_a_pickle_with_arbitrary_objects_is_refused_not_executed(tmp_path):
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": object()}, evil)
    with pytest.raises(ModelLoadError, match="evil.ckpt holds Python objects besides tensors"):
        load_components(evil)


@pytest.mark.parametrize("layout", ["a1111", "diffusers"])
def test_a_separate_vae_file_replaces_the_checkpoints_vae(layout, tmp_path, tiny_sdxl_path):
    _, vae, _ = tiny.build_tiny_models("sdxl", seed=5)
    if layout == "a1111":  # e.g. sdxl_vae.safetensors as A1111 users have it: LDM names, no prefix
        ldm = singlefile.vae_to_ldm(vae.state_dict(), vae.config)
        tensors = {k[len(singlefile.VAE_ROOT):]: v for k, v in ldm.items()}
    else:  # e.g. sdxl-vae-fp16-fix's diffusion_pytorch_model.safetensors
        tensors = dict(vae.state_dict())
    vae_path = tmp_path / "vae.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(vae_path))
    c = load_components(tiny_sdxl_path, vae_path=vae_path)
    for key, value in vae.state_dict().items():
        assert torch.equal(c.vae.state_dict()[key], value), key
    # A checkpoint shipped without a VAE works with the separate one (and only with it).
    no_vae = tmp_path / "no_vae.safetensors"
    save_file({k: v for k, v in load_file(str(tiny_sdxl_path)).items() if not k.startswith("first_stage_model.")},
              str(no_vae))
    with_vae = load_components(no_vae, vae_path=vae_path)
    assert torch.equal(with_vae.vae.encoder.conv_in.weight, vae.encoder.conv_in.weight)
    with pytest.raises(ModelLoadError, match="missing the VAE .* separate VAE"):
        load_components(no_vae)
    # Something else given as the VAE (here: the UNet-and-text-encoder file) is named, not half-loaded.
    with pytest.raises(ModelLoadError, match="no_vae.safetensors holds no VAE weights"):
        load_components(tiny_sdxl_path, vae_path=no_vae)


def test_a_diffusers_folder_loads_with_its_own_tokenizers(tmp_path, tiny_sdxl_path):
    original = load_components(tiny_sdxl_path)
    build_pipeline(original).save_pretrained(tmp_path / "xl")
    c = load_components(tmp_path / "xl")
    assert c.family == "sdxl" and len(c.tokenizers) == 2
    assert c.tokenizers[1].pad_token == "!"
    with pytest.raises(ModelLoadError, match="is an sdxl model, not sd15"):
        load_components(tmp_path / "xl", family="sd15")
    assert torch.equal(c.unet.conv_in.weight, original.unet.conv_in.weight)
    half = load_components(tmp_path / "xl", dtype=torch.bfloat16)
    assert {m.dtype for m in [half.unet, half.vae, *half.text_encoders]} == {torch.bfloat16}


def test_files_that_are_not_a_trainable_model_get_a_message_naming_the_file(tmp_path, tiny_sd15_path):
    junk = tmp_path / "notes.safetensors"
    junk.write_text("hello")
    with pytest.raises(ModelLoadError, match="notes.safetensors"):
        load_components(junk)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_components(tmp_path / "missing.safetensors")
    with pytest.raises(ModelLoadError, match="neither"):
        load_components(tmp_path / "notes.txt") if (tmp_path / "notes.txt").write_text("x") else None
    # A UNet-only file: detected, but the text encoder and VAE are missing.
    unet_only = tmp_path / "unet_only.safetensors"
    state = {k: v for k, v in load_file(str(tiny_sd15_path)).items() if k.startswith("model.diffusion_model.")}
    save_file(state, str(unet_only))
    with pytest.raises(ModelLoadError, match="unet_only.safetensors is missing the VAE, text encoder"):
        load_components(unet_only, family="sd15")
    # An inpainting model (9 input channels).
    inpaint = tmp_path / "inpaint.safetensors"
    state = load_file(str(tiny_sd15_path))
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(32, 9, 3, 3, dtype=torch.float16)
    save_file(state, str(inpaint))
    with pytest.raises(ModelLoadError, match="inpaint.safetensors takes 9 input channels"):
        load_components(inpaint)
    # The wrong family, given explicitly.
    with pytest.raises(ModelLoadError, match="is an sd15 checkpoint, not sdxl"):
        load_components(tiny_sd15_path, family="sdxl")


def test_the_shipped_full_size_configs_are_the_real_sd15_and_sdxl_architectures():
    from cloudlora_backend.trainer.model import archs

    sd15 = archs.read_config(archs.arch_dir("sd15"), "unet")
    assert sd15["block_out_channels"] == [320, 640, 1280, 1280] and sd15["cross_attention_dim"] == 768
    xl = archs.read_config(archs.arch_dir("sdxl"), "unet")
    assert xl["transformer_layers_per_block"] == [1, 2, 10] and xl["cross_attention_dim"] == 2048
    assert xl["projection_class_embeddings_input_dim"] == 2816 and xl["addition_embed_type"] == "text_time"
    te2 = archs.read_config(archs.arch_dir("sdxl"), "text_encoder_2")
    assert (te2["hidden_size"], te2["num_hidden_layers"], te2["hidden_act"]) == (1280, 32, "gelu")
    assert archs.read_config(archs.arch_dir("sdxl"), "vae")["scaling_factor"] == 0.13025
    assert archs.read_config(archs.arch_dir("sd15"), "vae")["scaling_factor"] == 0.18215
    # The tiny configs keep the layout and change only widths.
    for fam in ("sd15", "sdxl"):
        full = archs.read_config(archs.arch_dir(fam), "unet")
        small = archs.read_config(archs.arch_dir(fam, True), "unet")
        for key in ("down_block_types", "up_block_types", "layers_per_block", "transformer_layers_per_block",
                    "addition_embed_type", "use_linear_projection"):
            assert full.get(key) == small.get(key), (fam, key)
    tiny_xl = archs.arch_dir("sdxl", True)
    xl_tiny = [archs.read_config(tiny_xl, s)["hidden_size"] for s in ("text_encoder", "text_encoder_2")]
    assert xl_tiny[0] != xl_tiny[1]  # single-file loading tells SDXL's two encoders apart by width


def test_the_right_shipped_config_is_picked_by_tensor_widths():
    from cloudlora_backend.trainer.model import archs

    real = {"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
            "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (49408, 768)}
    small = {"model.diffusion_model.input_blocks.0.0.weight": (32, 4, 3, 3)}
    odd = {"model.diffusion_model.input_blocks.0.0.weight": (48, 4, 3, 3)}
    assert archs.pick_arch_dir("sd15", real).name == "sd15"
    assert archs.pick_arch_dir("sd15", small).name == "sd15-tiny"
    assert archs.pick_arch_dir("sd15", odd) is None
    assert models.SINGLE_FILE_SUFFIXES[0] == ".safetensors"


def test_an_old_sd1_checkpoint_without_clips_text_model_level_loads_the_same(tmp_path, tiny_sd15_path):
    root = "cond_stage_model.transformer."
    state = load_file(str(tiny_sd15_path))
    old = {(root + k[len(root + "text_model."):] if k.startswith(root + "text_model.") else k): v
           for k, v in state.items()}
    assert any(k.startswith(root + "encoder.layers.") for k in old)
    path = tmp_path / "old.safetensors"
    save_file(old, str(path))
    a, b = load_components(path), load_components(tiny_sd15_path)
    for (name, x), y in zip(a.text_encoders[0].state_dict().items(), b.text_encoders[0].state_dict().values()):
        assert torch.equal(x, y), name


def test_a_model_loads_straight_into_the_compute_dtype_on_its_device_with_the_vae_in_fp32(tiny_sdxl_path):
    """What a GPU run does (bf16 UNet and text encoders, fp32 VAE), here on the CPU: the same values as loading in
    fp32 and casting, without the fp32 copy."""
    full = load_components(tiny_sdxl_path)
    half = load_components(tiny_sdxl_path, dtype=torch.bfloat16, vae_dtype=torch.float32, device="cpu")
    assert {p.dtype for m in [half.unet, *half.text_encoders] for p in m.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in half.vae.parameters()} == {torch.float32}
    assert {p.device.type for m in [half.unet, half.vae, *half.text_encoders] for p in m.parameters()} == {"cpu"}
    for a, b in [(full.unet, half.unet), (full.vae, half.vae)] + list(zip(full.text_encoders, half.text_encoders)):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p.to(q.dtype), q), name
