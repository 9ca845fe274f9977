"""Dataset -> the trainer entrypoint -> a Kohya LoRA that A1111 loads, with sidecar, preview, samples, TensorBoard."""
from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from cloudlora_backend.trainer.network import lora
from cloudlora_backend.trainer.model.load import build_pipeline, load_components

from .kohya_check import assert_a1111_loadable
from .train_helpers import SAMPLE_DATASET, SMALL, failure, make_job, run_entrypoint, tensorboard_tags
from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test

# Runs again under every transformers of TRANSFORMERS_VARIANTS (tools/test.sh): text-encoder LoRA and loading.
pytestmark = pytest.mark.transformers_matrix




def _unet_out(unet, family, seed=3):
    g = torch.Generator().manual_seed(seed)
    ctx = torch.randn(1, 77, unet.config.cross_attention_dim, generator=g)
    kwargs = {}
    if family == "sdxl":
        pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(1, pooled, generator=g),
                                       "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}
    with torch.no_grad():
        return unet(torch.randn(1, 4, 8, 8, generator=g), 500, ctx, **kwargs).sample


def _apply_file_with_our_mapping(model_path, family, lora_path):
    """Reads the Kohya file back into peft adapters through the writer's own name mapping."""
    c = load_components(model_path, family)
    meta = safe_open(str(lora_path), "pt").metadata()
    rank, alpha = int(meta["ss_network_dim"]), float(meta["ss_network_alpha"])
    tensors = load_file(str(lora_path))
    train_te = any(k.startswith("lora_te") for k in tensors)
    lora.add_lora(c, rank, alpha, train_te)
    with torch.no_grad():
        for name, (model, path) in lora.kohya_module_names(c).items():
            layer = model.get_submodule(path)
            layer.lora_A["default"].weight.copy_(tensors[f"{name}.lora_down.weight"])
            layer.lora_B["default"].weight.copy_(tensors[f"{name}.lora_up.weight"])
            assert float(tensors[f"{name}.alpha"]) == alpha
    return c


@pytest.mark.parametrize("family,steps,extra", [
    ("sd15", 4, 'network_dim = 4\nnetwork_alpha = 2\nlearning_rate = 1e-3\nunet_lr = 1e-3\ntext_encoder_lr = 1e-3\n'
                'sample_every_n_steps = 2\nsample_prompts = "cldemo --s 3 --w 64 --h 64 --d 5"\n'),
    ("sdxl", 2, 'network_dim = 4\nnetwork_alpha = 8\nlearning_rate = 1e-3\nunet_lr = 1e-3\n'),
], ids=["sd15", "sdxl"])
def test_the_entrypoint_trains_a_lora_that_a1111_loads_and_diffusers_reads_back_the_same(
        family, steps, extra, tmp_path, tiny_sd15_path, tiny_sdxl_path, capsys):
    model = {"sd15": tiny_sd15_path, "sdxl": tiny_sdxl_path}[family]
    toml = SMALL + 'save_precision = "float"\nlr_scheduler = "constant"\nlr_warmup_steps = 0\n' + extra
    root = make_job(tmp_path / "job", model, SAMPLE_DATASET, toml, output_name="cldemo-v1",
                    extra_hp={"family": family, "max_train_steps": steps, "job_id": "ignored-by-the-trainer"})
    assert run_entrypoint(root) == 0, failure(root)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("step=")]
    assert [ln.split()[0] for ln in lines] == [f"step={i}/{steps}" for i in range(1, steps + 1)]
    assert all(re.fullmatch(r"step=\d+/\d+ loss=\d+\.\d{4} lr=[0-9.e+-]+ it/s=\d+\.\d\d", ln) for ln in lines), lines

    out = root / "model"
    lora_path = out / "cldemo-v1.safetensors"
    base = load_components(model, family)
    counts = assert_a1111_loadable(lora_path, base)
    assert counts["te"] == ([] if family == "sdxl" else [72])  # SDXL defaults train the UNet only
    meta = safe_open(str(lora_path), "pt").metadata()
    assert meta["ss_steps"] == str(steps) and meta["ss_network_dim"] == "4"
    assert json.loads(meta["ss_tag_frequency"])["10_cldemo"]["cldemo"] == 6

    sidecar = json.loads((out / "cldemo-v1.json").read_text())
    assert sidecar["activation text"] == "cldemo"
    assert sidecar["sd version"] == {"sd15": "SD1", "sdxl": "SDXL"}[family]
    assert sidecar["preferred weight"] == 1 and "tiny-" in sidecar["notes"] and f"steps: {steps}" in sidecar["notes"]
    assert (out / "cldemo-v1.preview.png").stat().st_size > 0
    if family == "sd15":
        assert sorted(p.name for p in (out / "samples").glob("*.png")) == ["000002_00.png", "000004_00.png"]
        assert (out / "cldemo-v1.preview.png").read_bytes() == (out / "samples" / "000004_00.png").read_bytes()
    tags = tensorboard_tags(root / "output" / "tensorboard")
    assert {"loss/current", "loss/average", "lr/unet"} <= tags
    assert ("lr/textencoder" in tags) == (family == "sd15")
    assert not failure(root)

    # Round trip: the file applied through our module mapping == the file loaded by diffusers' Kohya reader,
    # and training really moved the model away from the base.
    ours = _unet_out(_apply_file_with_our_mapping(model, family, lora_path).unet, family)
    pipe = build_pipeline(load_components(model, family))
    pipe.load_lora_weights(str(lora_path.parent), weight_name=lora_path.name)
    theirs = _unet_out(pipe.unet, family)
    plain = _unet_out(base.unet, family)
    assert (ours - plain).abs().max() > 1e-4, "training left the LoRA at zero"
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


def test_a_jumpstart_dataset_trains_with_prior_preservation_from_its_class_prompt(tmp_path, tiny_sd15_path):
    from .train_helpers import draw_image

    ds = tmp_path / "jumpstart"
    for i in range(2):
        draw_image(ds / f"dog{i}.png", (64, 64), seed=i)
    (ds / "dataset_info.json").write_text(json.dumps({"instance_prompt": "a photo of sks dog",
                                                      "class_prompt": "a photo of a dog"}))
    root = make_job(tmp_path / "job", tiny_sd15_path, ds, SMALL + "prior_loss_weight = 0.5\n", output_name="sks",
                    extra_hp={"max_train_steps": 2, "num_class_images": 2})
    assert run_entrypoint(root) == 0, failure(root)
    generated = sorted(p.name for p in (root / "cache" / "class_images").iterdir())
    assert generated == ["class_00000.png", "class_00000.txt", "class_00001.png", "class_00001.txt"]
    assert (root / "cache" / "class_images" / "class_00000.txt").read_text() == "a photo of a dog"
    sidecar = json.loads((root / "model" / "sks.json").read_text())
    assert sidecar["activation text"] == "a photo of sks dog"
    meta = safe_open(str(root / "model" / "sks.safetensors"), "pt").metadata()
    assert meta["ss_num_reg_images"] == "2" and meta["ss_prior_loss_weight"] == "0.5"
