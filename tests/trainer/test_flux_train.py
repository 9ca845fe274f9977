"""A FLUX.1 job through the trainer entrypoint: images + a transformer-only checkpoint with its separate CLIP-L,
T5-XXL and AE -> a Kohya Flux LoRA that resolves on every layer of the BFL layout, with the sidecar Forge reads as
Flux, a preview and samples; the objective is sd-scripts'; an fp8 base stores fp8 and computes what it dequantizes to.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import torch
from safetensors import safe_open

from cloudlora_backend.trainer.config import train_config as config
from cloudlora_backend.trainer.model.family import read_safetensors_header
from cloudlora_backend.trainer.model import flux_keys as K
from cloudlora_backend.trainer.flux.load import load_flux
from cloudlora_backend.trainer.flux.model import FP8, Linear, img_ids
from cloudlora_backend.trainer.flux.train import FluxTrainer, sample_sigmas
from cloudlora_backend.trainer.loop.train import RunPaths

from .kohya_check import forge_sd_version
from .train_helpers import failure, make_dataset, make_job, run_entrypoint
from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test

# 64 px images, short T5 sequences: a step of the full-depth tiny model takes about a second on one core.
FAST = ('resolution = "64,64"\nmin_bucket_reso = 64\nmax_bucket_reso = 128\nbucket_reso_steps = 64\n'
        't5xxl_max_token_length = 32\nnetwork_dim = 4\nnetwork_alpha = 4\nlearning_rate = 1e-3\nunet_lr = 1e-3\n')


def test_the_entrypoint_trains_a_flux_lora_from_bfl_parts_that_forge_reads_as_flux(tmp_path, tiny_flux_parts, capsys):
    ds = make_dataset(tmp_path / "ds", [(64, 64), (80, 64)], folder="3_fxdemo")
    cfg = FAST + 'max_train_steps = 3\nsample_every_n_steps = 2\nsample_prompts = "fxdemo --s 2 --g 3.5 --d 1"\n'
    root = make_job(tmp_path / "job", tiny_flux_parts["transformer"], ds, cfg, output_name="fxlora")
    for part in ("clip_l", "t5xxl", "ae"):  # the job's channels, as the local backend links them
        (root / "input" / "data" / part).mkdir(parents=True)
        os.symlink(tiny_flux_parts[part], root / "input" / "data" / part / tiny_flux_parts[part].name)
    assert run_entrypoint(root) == 0, failure(root)
    out = capsys.readouterr().out
    assert "step=3/3 loss=" in out and "304 modules" in out and "float8_e4m3fn" in out  # fp8_base is the default

    model = root / "model"
    lora = model / "fxlora.safetensors"
    header = read_safetensors_header(lora)
    meta = header.pop("__metadata__")
    assert meta["ss_base_model_version"] == "flux1" and meta["ss_network_module"] == "networks.lora_flux"
    assert meta["modelspec.architecture"] == "flux-1-dev/lora" and forge_sd_version(meta) == "Flux"
    assert (meta["ss_timestep_sampling"], meta["ss_discrete_flow_shift"], meta["ss_model_prediction_type"],
            meta["ss_guidance_scale"]) == ("shift", "3.1582", "raw", "1.0")  # sd-scripts' recommended settings
    assert meta["ss_output_name"] == "fxlora" and meta["ss_network_dim"] == "4" and meta["ss_steps"] == "3"
    # Every key lands on a layer of the BFL-layout transformer with fitting shapes: 304 modules, no text encoder.
    resolved = K.resolve_lora(K.shapes_of(header), read_safetensors_header(tiny_flux_parts["transformer"]))
    assert resolved.ok, (resolved.unresolved[:3], resolved.wrong_shape[:3])
    assert len(resolved.modules) == 304 == len(K.lora_targets()) and len(header) == 3 * 304
    assert not any(k.startswith("lora_te") for k in header)
    with safe_open(str(lora), "pt") as f:
        assert any(f.get_tensor(f"{m}.lora_up.weight").abs().sum() > 0 for m in resolved.modules)  # it trained

    sidecar = json.loads((model / "fxlora.json").read_text())
    assert sidecar["sd version"] == "Flux" and sidecar["activation text"] == "fxdemo"
    assert (model / "fxlora.preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (model / "samples" / "000002_00.png").is_file()


def _trainer(tmp_path, model, extra: str = "", **kwargs) -> FluxTrainer:
    ds = make_dataset(tmp_path / "ds", [(64, 64), (64, 64)], folder="2_fxdemo")
    cfg = config.parse(FAST + extra, "flux")
    paths = RunPaths(model=model, dataset=ds, model_dir=tmp_path / "model", tensorboard=tmp_path / "tb",
                     checkpoints=tmp_path / "ckpt", cache=tmp_path / "cache", output_name="fx")
    t = FluxTrainer(cfg, paths, log=lambda m: None, **kwargs)
    t.setup()
    return t


def test_the_loss_is_sd_scripts_flow_matching_objective_with_shifted_sigmas_and_guidance_1(tmp_path, tiny_flux_path):
    """noisy = (1 - s) x + s n, target n - x, raw prediction, guidance 1.0, s = shift(sigmoid(N(0, 1)), 3.1582)."""
    t = _trainer(tmp_path, tiny_flux_path, "fp8_base = false\n")
    from cloudlora_backend.trainer.data import dataset as data_mod
    from cloudlora_backend.trainer.flux.model import pack_latents, unpack_latents

    batch = data_mod.epoch_batches(t.data, t.cfg, 1, 1)[0]
    seen = {}
    model = t.components.unet
    forward = model.forward

    def spy(img, ids, txt, txt_ids, timesteps, y, guidance=None, mask=None):
        seen.update(img=img, timesteps=timesteps, guidance=guidance, txt=txt, y=y)
        return forward(img, ids, txt, txt_ids, timesteps, y, guidance, mask)

    model.forward = spy
    loss = t.loss(batch, 7)
    model.forward = forward
    # The same draw by hand, from sd-scripts' formulas.
    gen = torch.Generator().manual_seed(t.cfg.seed * 1_000_003 + 7)
    latents = torch.stack([t.latents.get(e.example, e.flip) for e in batch])
    noise = torch.randn(latents.shape, generator=gen)
    u = torch.sigmoid(torch.randn(1, generator=gen))
    sigma = u * 3.1582 / (1 + 2.1582 * u)
    assert torch.allclose(seen["timesteps"], sigma) and torch.equal(seen["guidance"], torch.ones(1))
    noisy = (1 - sigma) * latents + sigma * noise
    assert torch.allclose(seen["img"], pack_latents(noisy), atol=1e-6)
    with torch.no_grad():
        pred = forward(seen["img"], img_ids(1, 4, 4), seen["txt"], torch.zeros(1, 32, 3), sigma, seen["y"],
                       torch.ones(1))
    expected = ((unpack_latents(pred, 4, 4) - (noise - latents)) ** 2).mean()
    assert math.isclose(float(loss.detach()), float(expected), rel_tol=1e-5)
    # The other samplings sd-scripts offers draw inside (0, 1) too.
    for how in ("uniform", "sigmoid", "flux_shift"):
        t.cfg.timestep_sampling = how
        s = sample_sigmas(t.cfg, 256, (32, 32), torch.Generator().manual_seed(0))
        assert 0 < float(s.min()) and float(s.max()) < 1


def test_an_fp8_base_stores_fp8_and_computes_exactly_what_its_dequantized_weights_compute(tiny_flux_path):
    full = load_flux(tiny_flux_path).unet
    fp8 = load_flux(tiny_flux_path, transformer_storage=FP8).unet
    linears = [(n, m) for n, m in fp8.named_modules() if isinstance(m, Linear)]
    assert linears and all(m.weight.dtype == FP8 for _n, m in linears)
    assert all(m.weight.element_size() == 1 for _n, m in linears)  # one byte per weight: half of bf16's
    # The reference: the fp32 model with every Linear weight rounded through fp8 and back.
    reference = load_flux(tiny_flux_path).unet
    with torch.no_grad():
        for name, m in reference.named_modules():
            if isinstance(m, Linear):
                m.weight.copy_(m.weight.to(FP8).float())
    g = torch.Generator().manual_seed(1)
    args = (torch.randn(1, 16, 64, generator=g), img_ids(1, 4, 4), torch.randn(1, 8, 32, generator=g),
            torch.zeros(1, 8, 3), torch.tensor([0.5]), torch.randn(1, 32, generator=g), torch.tensor([1.0]))
    with torch.no_grad():
        a, b, c = fp8(*args), reference(*args), full(*args)
    assert torch.allclose(a, b, atol=1e-6)  # fp8 storage = exact upcast of the stored values
    assert (a - c).norm() / c.norm() < 0.1  # and close to full precision (e4m3 keeps 3 mantissa bits)


def test_bf16_training_on_an_fp8_base_moves_only_the_fp32_lora(tmp_path, tiny_flux_path):
    """The GPU code path on CPU: bf16 autocast, the frozen transformer in fp8, LoRA weights and optimizer in fp32."""
    t = _trainer(tmp_path, tiny_flux_path, "max_train_steps = 2\nmixed_precision = \"bf16\"\n", cpu_autocast=True)
    assert t.autocast_dtype == torch.bfloat16
    base = {n: p.detach().clone() for n, p in t.components.unet.named_parameters() if not p.requires_grad}
    assert {p.dtype for n, p in base.items() if n.endswith("base_layer.weight")} == {FP8}
    lora = {n: p.detach().clone() for n, p in t.params.items()}
    assert all(p.dtype == torch.float32 for p in t.params.values())
    result = t.run()
    assert result.steps == 2 and all(np.isfinite(result.losses))
    after = dict(t.components.unet.named_parameters())
    assert all(torch.equal(after[n].detach(), p) for n, p in base.items())  # the base never changes
    assert any(not torch.equal(t.params[n].detach(), p) for n, p in lora.items())  # the LoRA does
    with safe_open(str(result.lora), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}  # save_precision bf16, as sd-scripts
