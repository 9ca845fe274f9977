"""LoCon and DoRA: sd-scripts' module set and key names, and files whose every key A1111 1.10 resolves and applies
as the trained layers do (the project's A1111 check, tests/trainer/kohya_check.py)."""
from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from cloudlora_backend.trainer.config import train_config as config
from cloudlora_backend.trainer.network import dora, lora
from cloudlora_backend.trainer.model.load import load_components
from tests.trainer.kohya_check import EXPECTED_MODULES, a1111_updown, assert_a1111_loadable, \
    check_kohya_tensors, checkpoint_shapes_of
from tests.trainer.test_model_lora import _full_size_on_meta, _randomise_adapters

pytestmark = pytest.mark.transformers_matrix


def sd_scripts_unet_module_count(unet, conv: bool) -> int:
    """sd-scripts networks/lora.py LoRANetwork.create_modules, transcribed: every Linear / Conv2d inside the
    Transformer2DModel blocks, and with conv_dim also inside ResnetBlock2D, Downsample2D and Upsample2D."""
    classes = ["Transformer2DModel"] + (["ResnetBlock2D", "Downsample2D", "Upsample2D"] if conv else [])
    found = set()
    for name, module in unet.named_modules():
        if type(module).__name__ in classes:
            for child in module.modules():
                if type(child).__name__ in ("Linear", "Conv2d"):
                    found.add(id(child))
    return len(found)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_locon_adds_the_convolutions_sd_scripts_adds_and_every_key_resolves_in_a1111(family):
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    from cloudlora_backend.trainer.model import archs
    from cloudlora_backend.trainer.model.load import Components

    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(archs.arch_dir(family) / "unet"))
    want = sd_scripts_unet_module_count(unet, conv=True)
    assert sd_scripts_unet_module_count(unet, conv=False) == EXPECTED_MODULES[family]["unet"]
    text_encoders = _full_size_on_meta(family).text_encoders  # only their A1111 key shapes are read
    components = Components(family=family, unet=unet, vae=None, text_encoders=text_encoders, tokenizers=[],
                            noise_scheduler=None)
    with init_empty_weights():
        lora.add_lora(components, rank=16, alpha=8, train_text_encoder=False, conv_dim=4, conv_alpha=2)
    # (the helper's text encoders carry adapters of their own: only the UNet's are this network's)
    names = {n: v for n, v in lora.kohya_module_names(components).items() if n.startswith("lora_unet_")}
    assert len(names) == want > EXPECTED_MODULES[family]["unet"]
    tensors, ranks = {}, {}
    for name, (model, path) in names.items():
        layer = model.get_submodule(path)
        down, up = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        tensors.update({f"{name}.lora_down.weight": tuple(down.shape), f"{name}.lora_up.weight": tuple(up.shape),
                        f"{name}.alpha": ()})
        ranks[name] = (down.shape[0], tuple(down.shape[2:]), layer.lora_alpha["default"])
    counts = check_kohya_tensors(tensors, checkpoint_shapes_of(components))
    assert counts["unet"] == want
    # sd-scripts' choice of rank: conv_dim for 3x3 convolutions, network_dim for the Linear and 1x1 ones.
    conv1 = "lora_unet_down_blocks_0_resnets_0_conv1" if family == "sd15" else "lora_unet_input_blocks_1_0_in_layers_2"
    emb = "lora_unet_down_blocks_0_resnets_0_time_emb_proj" if family == "sd15" else \
        "lora_unet_input_blocks_1_0_emb_layers_1"
    op = "lora_unet_down_blocks_0_downsamplers_0_conv" if family == "sd15" else "lora_unet_input_blocks_3_0_op"
    assert ranks[conv1] == (4, (3, 3), 2) and ranks[op] == (4, (3, 3), 2)
    assert ranks[emb] == (16, (), 8)


def _effective_weight(layer) -> torch.Tensor:
    """The weight the trained layer really applies: W + delta, DoRA-rescaled per input channel."""
    base = layer.get_base_layer().weight.float()
    merged = base + layer.get_delta_weight("default").float()
    scale = dora.scale_of(layer)
    return merged if scale is None else merged * scale.float() / dora.column_norm(merged)


def test_a1111_applies_exactly_the_trained_change_of_every_locon_and_dora_layer(tmp_path, tiny_sd15_path):
    c = load_components(tiny_sd15_path)
    lora.add_lora(c, rank=4, alpha=3, train_text_encoder=True, conv_dim=2, conv_alpha=1.5, use_dora=True)
    _randomise_adapters(c, seed=3)
    with torch.no_grad():  # magnitudes away from ||W||, so the decomposition does something
        for layer in [m for model in [c.unet, *c.text_encoders] for m in lora.lora_layers(model).values()]:
            dora.scale_of(layer).mul_(1.3)
    out = lora.save_kohya(tmp_path / "dora.safetensors", c, 4, 3, {}, save_dtype="float")
    n_unet = sd_scripts_unet_module_count(load_components(tiny_sd15_path).unet, conv=True)
    counts = assert_a1111_loadable(out, c, expected={"unet": n_unet, "te": [72]})
    assert counts["modules"] == n_unet + 72
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["ss_network_dim"] == "4"
        for name, (model, path) in lora.kohya_module_names(c).items():
            layer = model.get_submodule(path)
            base = layer.get_base_layer().weight
            got = a1111_updown(f.get_tensor(f"{name}.lora_up.weight"), f.get_tensor(f"{name}.lora_down.weight"),
                               f.get_tensor(f"{name}.alpha").item(), tuple(base.shape),
                               f.get_tensor(f"{name}.dora_scale"), base)
            torch.testing.assert_close(base.float() + got, _effective_weight(layer), rtol=1e-4, atol=1e-5, msg=name)
    # The layers really compute with that weight (the DoRA pre-hook scales the input per channel).
    names = lora.kohya_module_names(c)
    for name in ("lora_unet_down_blocks_0_resnets_0_conv1", "lora_te_text_model_encoder_layers_0_mlp_fc1"):
        model, path = names[name]
        layer = model.get_submodule(path)
        base = layer.get_base_layer()
        x = torch.randn((1, base.in_channels, 8, 8) if isinstance(base, torch.nn.Conv2d) else (2, base.in_features))
        with torch.no_grad():
            y = layer(x)
            w = _effective_weight(layer)
            expected = (torch.nn.functional.conv2d(x, w, base.bias, base.stride, base.padding)
                        if isinstance(base, torch.nn.Conv2d) else torch.nn.functional.linear(x, w, base.bias))
        torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-5, msg=name)


def test_a_fresh_dora_network_leaves_the_model_unchanged_until_it_trains(tiny_sd15_path):
    base, c = load_components(tiny_sd15_path), load_components(tiny_sd15_path)
    lora.add_lora(c, rank=4, alpha=4, train_text_encoder=False, conv_dim=2, use_dora=True)
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 77, c.unet.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(c.unet(x, 500, ctx).sample, base.unet(x, 500, ctx).sample, rtol=1e-4, atol=1e-5)
    trainable = [p for p in c.unet.parameters() if p.requires_grad]
    assert sum(1 for p in trainable if p.dim() > 0 and p.shape[0] == 1) == len(lora.lora_layers(c.unet))  # magnitudes


@pytest.mark.parametrize("toml,kind", [
    ('network_args = ["conv_dim=8", "conv_alpha=4"]', "LoCon"),
    ('network_module = "lycoris.kohya"\nnetwork_args = ["algo=locon", "conv_dim=8"]', "LoCon"),
    ('network_module = "lycoris.kohya"\nnetwork_args = ["algo=lora", "dora_wd=True"]', "DoRA (LoRA)"),
    ('network_module = "lycoris.kohya"\nnetwork_args = ["conv_dim=4", "dora_wd=True", "wd_on_output=False"]',
     "DoRA (LoCon)"),
])
def test_sd_scripts_and_lycoris_spellings_of_locon_and_dora_are_understood(toml, kind):
    assert config.check(toml + "\n", "sd15").errors == []
    spec = config.parse(toml + "\n", "sd15").network
    assert spec.kind == kind
    if "conv_alpha=4" in toml:
        assert (spec.conv_dim, spec.conv_alpha) == (8, 4.0)
    if "algo=locon" in toml:
        assert spec.conv_alpha == 1.0  # sd-scripts' default when only conv_dim is given


@pytest.mark.parametrize("toml,family,words", [
    ('network_module = "lycoris.kohya"\nnetwork_args = ["algo=loha"]', "sd15", ["LoHa", "algo=lora"]),
    ('network_module = "lycoris.kohya"\nnetwork_args = ["algo=lokr", "factor=8"]', "sd15", ["factor"]),
    ('network_module = "lycoris.kohya"\nnetwork_args = ["algo=lokr"]', "sd15", ["LoKr"]),
    ('network_args = ["dora_wd=True"]', "sd15", ["dora_wd", "lycoris.kohya"]),
    ('network_module = "lycoris.kohya"\nnetwork_args = ["dora_wd=True", "wd_on_output=True"]', "sd15",
     ["wd_on_output", "A1111"]),
    ('network_module = "lycoris.kohya"\nnetwork_args = ["dora_wd=True"]\nnetwork_train_unet_only = false', "sdxl",
     ["dora_wd", "network_train_unet_only = true"]),
    ('network_args = ["conv_alpha=4"]', "sd15", ["conv_alpha", "conv_dim"]),
    ('network_args = ["conv_dim"]', "sd15", ["key=value"]),
    ("validation_split = 0.1", "flux", ["validation_split", "FLUX.1"]),
    ('network_args = ["conv_dim=4"]', "flux", ["network_args", "FLUX.1"]),
])
def test_networks_that_cannot_be_written_faithfully_are_refused_with_the_reason(toml, family, words):
    errors = config.check(toml + "\n", family).errors
    assert len(errors) == 1, errors
    for word in words:
        assert word in errors[0], (word, errors[0])


def test_top_level_conv_dim_from_the_kohya_gui_says_where_sd_scripts_reads_it():
    report = config.check("conv_dim = 8\n", "sd15")
    assert report.ok
    assert any('network_args = ["conv_dim=8"]' in w for w in report.warnings)
