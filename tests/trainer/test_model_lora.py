"""LoRA on exactly Kohya's modules, written as a Kohya file that A1111 resolves fully and diffusers loads back."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors import safe_open

from cloudlora_backend.trainer.model import archs
from cloudlora_backend.trainer.network import lora
from cloudlora_backend.trainer.model.load import Components, load_components
from tests.trainer.kohya_check import EXPECTED_MODULES, a1111_updown, assert_a1111_loadable, \
    check_kohya_tensors, checkpoint_shapes_of

# Runs again under every transformers of TRANSFORMERS_VARIANTS (tools/test.sh): text-encoder LoRA and loading.
pytestmark = pytest.mark.transformers_matrix


def _load(path, dtype=torch.float32):
    """A fresh base model (loading a tiny one is faster than deep-copying it)."""
    return load_components(path, dtype=dtype)


def _full_size_on_meta(family):
    """The real SD1.5 / SDXL architecture without allocating a single weight."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = archs.arch_dir(family)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        encoders = [CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))]
        if family == "sdxl":
            encoders.append(CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2")))
        components = Components(family=family, unet=unet, vae=None, text_encoders=encoders, tokenizers=[],
                                noise_scheduler=None)
        lora.add_lora(components, rank=32, alpha=16, train_text_encoder=True)
    return components


@pytest.mark.parametrize("family,total", [("sd15", 264), ("sdxl", 986)])
def test_full_size_models_get_kohyas_module_count_and_every_name_resolves_in_a1111(family, total):
    components = _full_size_on_meta(family)
    assert next(components.unet.parameters()).device.type == "meta"
    names = lora.kohya_module_names(components)
    assert len(names) == total
    # Shapes only (meta tensors): every module resolves to an A1111 layer of the right shape.
    tensors = {}
    for name, (model, path) in names.items():
        layer = model.get_submodule(path)
        tensors[f"{name}.lora_down.weight"] = tuple(layer.lora_A["default"].weight.shape)
        tensors[f"{name}.lora_up.weight"] = tuple(layer.lora_B["default"].weight.shape)
        tensors[f"{name}.alpha"] = ()
    counts = check_kohya_tensors(tensors, checkpoint_shapes_of(components))
    assert counts["unet"] == EXPECTED_MODULES[family]["unet"]
    assert counts["te"] == EXPECTED_MODULES[family]["te"]


def _randomise_adapters(components, seed=1):
    """Stands in for training: non-zero LoRA weights (lora_up starts at zero, which would prove nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for model in [components.unet, *components.text_encoders]:
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def _outputs(unet, encoders, tokenizers, family):
    """Text-encoder hidden states and a UNet prediction on fixed inputs."""
    g = torch.Generator().manual_seed(7)
    prompt = "a photo of a cat"
    hidden = []
    with torch.no_grad():
        for tok, enc in zip(tokenizers, encoders):
            ids = tok(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids
            hidden.append(enc(ids, output_hidden_states=True).hidden_states[-2])
        context = torch.randn(1, 77, unet.config.cross_attention_dim, generator=g)
        kwargs = {}
        if family == "sdxl":
            pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
            kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(1, pooled, generator=g),
                                           "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}
        sample = unet(torch.randn(1, 4, 8, 8, generator=g), 500, context, **kwargs).sample
    return hidden + [sample]


@pytest.mark.parametrize("family,rank,alpha,save", [("sd15", 4, 2.5, "float"), ("sdxl", 4, 8, "float")])
def test_a_saved_kohya_lora_loaded_back_by_diffusers_reproduces_the_trained_model(
        family, rank, alpha, save, tmp_path, tiny_sd15_path, tiny_sdxl_path):
    from cloudlora_backend.trainer.model.load import build_pipeline

    path = {"sd15": tiny_sd15_path, "sdxl": tiny_sdxl_path}[family]
    trained = _load(path)
    lora.add_lora(trained, rank=rank, alpha=alpha, train_text_encoder=True)
    _randomise_adapters(trained)
    out = lora.save_kohya(tmp_path / "demo.safetensors", trained, rank, alpha, {"steps": 10}, save_dtype=save)
    assert_a1111_loadable(out, trained)

    base = _load(path)
    before = _outputs(base.unet, base.text_encoders, base.tokenizers, family)
    pipe = build_pipeline(base)
    # diffusers reads Kohya files (and their alpha) on its own; folder + weight_name works offline in every version
    pipe.load_lora_weights(str(out.parent), weight_name=out.name)
    encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if family == "sdxl" else [])
    reloaded = _outputs(pipe.unet, encoders, base.tokenizers, family)
    expected = _outputs(trained.unet, trained.text_encoders, trained.tokenizers, family)
    for what, b, r, e in zip(["text encoder 1", "text encoder 2", "unet"][-len(before):] if family == "sdxl"
                             else ["text encoder", "unet"], before, reloaded, expected):
        effect = (e - b).abs().max().item()
        error = (r - e).abs().max().item()
        assert effect > 1e-2, f"{what}: the adapters changed nothing, the test proves nothing"
        assert error < 1e-3 * max(1.0, e.abs().max().item()), f"{what}: reloaded differs by {error} (effect {effect})"


def test_alpha_is_network_alpha_not_the_rank_and_precision_follows_save_precision(tmp_path, tiny_sd15_path):
    c = _load(tiny_sd15_path)
    lora.add_lora(c, rank=8, alpha=1, train_text_encoder=False)
    for save, dtype in [("fp16", torch.float16), ("bf16", torch.bfloat16), ("float", torch.float32)]:
        out = lora.save_kohya(tmp_path / f"l_{save}.safetensors", c, 8, 1, {}, save_dtype=save)
        with safe_open(str(out), "pt") as f:
            keys = list(f.keys())
            alphas = {f.get_tensor(k).item() for k in keys if k.endswith(".alpha")}
            dtypes = {f.get_tensor(k).dtype for k in keys}
        assert alphas == {1.0}
        assert dtypes == {dtype}
        assert len(keys) == 3 * 192 and all(k.startswith("lora_unet_") for k in keys)
    counts = assert_a1111_loadable(out, c)
    assert counts == {"modules": 192, "unet": 192, "te": []}
    # peft trains the LoRA weights in fp32 whatever the base dtype
    assert all(p.dtype == torch.float32 for n, p in c.unet.named_parameters() if "lora_" in n)


def test_the_lora_params_train_in_fp32_on_a_half_precision_base(tiny_sd15_path):
    c = _load(tiny_sd15_path, dtype=torch.bfloat16)
    groups = lora.add_lora(c, rank=4, alpha=4, train_text_encoder=True)
    assert len(groups["unet"]) == 2 * 192 and len(groups["text_encoder"]) == 2 * 72
    assert {p.dtype for p in groups["unet"] + groups["text_encoder"]} == {torch.float32}
    assert all(p.requires_grad for p in groups["unet"])
    assert not any(p.requires_grad for n, p in c.unet.named_parameters() if "lora_" not in n)
    assert next(p for n, p in c.unet.named_parameters() if "lora_" not in n).dtype == torch.bfloat16


def test_the_metadata_carries_what_a1111_forge_and_sd_scripts_tools_read(tmp_path, tiny_sdxl_path):
    c = _load(tiny_sdxl_path)
    lora.add_lora(c, rank=4, alpha=2, train_text_encoder=False)
    facts = {"steps": 120, "epochs": 3, "num_train_images": 40, "resolution": (1024, 768),
             "tag_frequency": {"40_dwjz": {"dwjz": 10, "a man": 4}}, "trigger_phrase": "dwjz",
             "training_started_at": 1700000000.5, "learning_rate": 1e-4, "optimizer": "Prodigy",
             "train_unet_only": True, "seed": 42}
    out = lora.save_kohya(tmp_path / "dwjz_v1.safetensors", c, 4, 2, facts)
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0" and meta["ss_v2"] == "False"
    assert meta["ss_network_module"] == "networks.lora"
    assert (meta["ss_network_dim"], meta["ss_network_alpha"]) == ("4", "2.0")
    assert meta["ss_output_name"] == "dwjz_v1"
    assert json.loads(meta["ss_tag_frequency"]) == facts["tag_frequency"]
    assert (meta["ss_steps"], meta["ss_num_epochs"], meta["ss_num_train_images"]) == ("120", "3", "40")
    assert meta["ss_resolution"] == "(1024, 768)" and meta["modelspec.resolution"] == "1024x768"
    assert meta["ss_training_started_at"] == "1700000000.5"
    assert meta["ss_sd_model_name"] == tiny_sdxl_path.name
    # sd-scripts writes no ss_network_train_unet_only (the file's keys say what trained)
    assert "ss_network_train_unet_only" not in meta and meta["ss_seed"] == "42"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert meta["modelspec.sai_model_spec"] == "1.0.1"
    assert meta["modelspec.title"] == "dwjz_v1" and meta["modelspec.trigger_phrase"] == "dwjz"
    assert meta["modelspec.date"].startswith("2023-11-")
    # sshs_model_hash: SHA-256 of everything after the header, as sd-scripts precalculates it (the tensor data
    # does not depend on the metadata, so the saved file's own data section must hash to it).
    raw = out.read_bytes()
    data = raw[8 + int.from_bytes(raw[:8], "little"):]
    assert meta["sshs_model_hash"] == hashlib.sha256(data).hexdigest()
    assert len(meta["sshs_legacy_hash"]) == 8


def test_an_unknown_training_fact_is_refused_instead_of_silently_dropped(tmp_path, tiny_sd15_path):
    c = _load(tiny_sd15_path)
    lora.add_lora(c, rank=2, alpha=1, train_text_encoder=False)
    with pytest.raises(ValueError, match="stepz"):
        lora.save_kohya(tmp_path / "x.safetensors", c, 2, 1, {"stepz": 3})
    with pytest.raises(ValueError, match="save_precision"):
        lora.save_kohya(tmp_path / "x.safetensors", c, 2, 1, {}, save_dtype="int8")
    assert not (tmp_path / "x.safetensors").exists()


def test_sd15_module_names_are_the_diffusers_paths_and_sdxl_uses_sd_scripts_sgm_names(tiny_sd15_path, tiny_sdxl_path):
    sd15 = _load(tiny_sd15_path)
    lora.add_lora(sd15, 2, 1, True)
    names = set(lora.kohya_module_names(sd15))
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0" in names
    assert "lora_unet_mid_block_attentions_0_proj_in" in names
    assert "lora_te_text_model_encoder_layers_11_mlp_fc2" in names
    sdxl = _load(tiny_sdxl_path)
    lora.add_lora(sdxl, 2, 1, True)
    names = set(lora.kohya_module_names(sdxl))
    assert "lora_unet_input_blocks_7_1_transformer_blocks_9_ff_net_0_proj" in names
    assert "lora_unet_middle_block_1_transformer_blocks_9_attn2_to_k" in names
    assert "lora_unet_output_blocks_5_1_proj_out" in names
    assert "lora_te1_text_model_encoder_layers_11_self_attn_out_proj" in names
    assert "lora_te2_text_model_encoder_layers_31_self_attn_q_proj" in names


def test_the_weight_change_a1111_computes_from_the_file_is_the_trained_adapters_change(tmp_path, tiny_sd15_path):
    # SD1.5 has both kinds A1111 patches: Linear and 1x1 Conv2d (proj_in/proj_out).
    family = "sd15"
    c = _load(tiny_sd15_path)
    lora.add_lora(c, rank=4, alpha=3, train_text_encoder=True)
    _randomise_adapters(c, seed=5)
    out = lora.save_kohya(tmp_path / "d.safetensors", c, 4, 3, {}, save_dtype="float")
    with safe_open(str(out), "pt") as f:
        checked = 0
        for name, (model, path) in lora.kohya_module_names(c).items():
            layer = model.get_submodule(path)
            expected = layer.get_delta_weight("default")  # what peft adds to the base weight when training
            got = a1111_updown(f.get_tensor(f"{name}.lora_up.weight"), f.get_tensor(f"{name}.lora_down.weight"),
                               f.get_tensor(f"{name}.alpha").item(), tuple(layer.base_layer.weight.shape))
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=name)
            checked += 1
    assert checked == {"sd15": 264, "sdxl": 986}[family]
