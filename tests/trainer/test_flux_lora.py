"""The Kohya FLUX.1 LoRA: diffusers' FluxPipeline.load_lora_weights reads it back to the same outputs, and its keys
resolve on every layer of FLUX.1-dev's full-size BFL layout (the way Forge and ComfyUI map `lora_unet_` keys)."""
from __future__ import annotations

import torch

from cloudlora_backend.trainer.model import flux_keys as K
from cloudlora_backend.trainer.flux.lora import add_lora, save_flux_lora
from cloudlora_backend.trainer.flux.model import Flux, FluxParams, img_ids
from cloudlora_backend.trainer.flux.tiny import to_diffusers_transformer
from cloudlora_backend.trainer.network.lora import lora_layers
from cloudlora_backend.trainer.model.load import Components

from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test


def _wide_model() -> tuple[Flux, FluxParams]:
    """FLUX.1-dev's real widths with one double and one single block: diffusers' Kohya converter assumes the 3072
    width (it splits single_blocks.N.linear1 into 3 x 3072 + 12288 rows), so the round trip needs it."""
    params = FluxParams(context_in_dim=32, vec_in_dim=32, depth=1, depth_single_blocks=1)
    with torch.device("meta"):
        model = Flux(params)
    model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02 if p.ndim == 2 else 0.1, generator=g)
    model.requires_grad_(False)
    return model, params


def test_diffusers_flux_pipeline_loads_the_kohya_file_to_exactly_the_trained_outputs(tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    ours, params = _wide_model()
    with torch.device("meta"):
        theirs = FluxTransformer2DModel(num_layers=1, num_single_layers=1, joint_attention_dim=32,
                                        pooled_projection_dim=32, guidance_embeds=True)
    # The same tensors (views of ours: no second 2 GB copy), in diffusers' names.
    theirs.load_state_dict(to_diffusers_transformer(ours.state_dict(), params), strict=True, assign=True)
    g = torch.Generator().manual_seed(1)
    img, txt, pooled = (torch.randn(1, 16, 64, generator=g), torch.randn(1, 5, 32, generator=g),
                        torch.randn(1, 32, generator=g))
    sigma, guidance, ids, txt_ids = torch.tensor([0.4]), torch.tensor([1.0]), img_ids(1, 4, 4), torch.zeros(1, 5, 3)

    def run_ours():
        with torch.no_grad():
            return ours(img, ids, txt, txt_ids, sigma, pooled, guidance)

    def run_theirs():
        with torch.no_grad():
            return theirs(hidden_states=img, encoder_hidden_states=txt, pooled_projections=pooled, timestep=sigma,
                          img_ids=ids[0], txt_ids=txt_ids[0], guidance=guidance).sample

    base = run_ours()
    assert torch.equal(run_theirs(), base)
    add_lora(ours, 4, 8)  # alpha 8 on rank 4: the file's alpha must be applied (scale 2)
    with torch.no_grad():
        for layer in lora_layers(ours).values():
            layer.lora_B["default"].weight.normal_(0, 0.02, generator=g)
    trained = run_ours()
    components = Components(family="flux", unet=ours, vae=None, text_encoders=[], tokenizers=[],
                            noise_scheduler=None, model_name="wide", extra={"variant": "dev"})
    save_flux_lora(tmp_path / "wide.safetensors", components, 4, 8, {"resolution": (64, 64)}, torch.float32)
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=None, text_encoder=None, tokenizer=None,
                        text_encoder_2=None, tokenizer_2=None, transformer=theirs)
    pipe.load_lora_weights(str(tmp_path), weight_name="wide.safetensors")
    loaded = run_theirs()
    effect = (trained - base).norm()
    assert effect / base.norm() > 0.02  # the LoRA changes the output
    assert (loaded - trained).norm() / effect < 1e-4, "diffusers applies exactly what was trained"


def test_every_key_of_a_full_size_flux1_dev_lora_resolves_on_the_bfl_layout():
    with torch.device("meta"):
        model = Flux(FluxParams())  # FLUX.1-dev: 3072 wide, 19 double + 38 single blocks
        base = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        add_lora(model, 16, 16)
    lora = {}
    for path, layer in lora_layers(model).items():
        name = K.kohya_name(path)
        lora[f"{name}.lora_down.weight"] = tuple(layer.lora_A["default"].weight.shape)
        lora[f"{name}.lora_up.weight"] = tuple(layer.lora_B["default"].weight.shape)
        lora[f"{name}.alpha"] = ()
    for root in ("", K.TRANSFORMER_ROOT):  # flux1-dev.safetensors and all-in-one files
        resolved = K.resolve_lora(lora, {root + k: v for k, v in base.items()})
        assert resolved.ok and len(resolved.modules) == 304
    assert "lora_unet_double_blocks_18_txt_attn_qkv" in resolved.modules
    assert resolved.modules["lora_unet_single_blocks_37_linear1"] == "single_blocks.37.linear1.weight"
    params = sum(torch.Size(s).numel() for k, s in lora.items() if k.endswith("weight"))
    assert params == 76_578_816  # 153 MB in bf16 at rank 16, as sd-scripts' Flux LoRAs of that rank


def test_the_key_check_names_what_does_not_resolve():
    with torch.device("meta"):
        model = Flux(FluxParams(depth=1, depth_single_blocks=1))
        base = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    good = {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": (4, 3072),
            "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": (9216, 4),
            "lora_unet_double_blocks_0_img_attn_qkv.alpha": ()}
    assert K.resolve_lora(good, base).ok
    renamed = {k.replace("img_attn_qkv", "img_attn_to_q"): v for k, v in good.items()}  # diffusers-style name
    assert not K.resolve_lora(renamed, base).ok and len(K.resolve_lora(renamed, base).unresolved) == 3
    wrong = {**good, "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": (3072, 4)}
    res = K.resolve_lora(wrong, base)
    assert res.wrong_shape and "needs (9216, 4)" in res.wrong_shape[0]


def test_the_lora_sits_on_exactly_sd_scripts_module_set():
    """Every Linear in the double and single blocks (networks/lora_flux.py), nothing outside them."""
    with torch.device("meta"):
        model = Flux(FluxParams(depth=2, depth_single_blocks=2, hidden_size=64, num_heads=4, axes_dim=(4, 6, 6)))
        add_lora(model, 2, 2)
    assert set(lora_layers(model)) == set(K.lora_targets(2, 2))
    assert len(K.lora_targets(2, 2)) == 2 * 10 + 2 * 3
