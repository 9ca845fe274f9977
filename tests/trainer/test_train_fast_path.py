"""The fast training step (fused LoRA linears, compute-dtype norms) computes what peft's own layers compute, with
fewer ops; the LoRA it trains is the same file, loads fully in A1111, and layers it does not cover keep peft's path."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cloudlora_backend.trainer.config import train_config as config
from cloudlora_backend.trainer.data import dataset as data
from cloudlora_backend.trainer.network import fused_lora, norms
from cloudlora_backend.trainer.model.load import load_components
from cloudlora_backend.trainer.loop.train import RunPaths, Trainer

from .kohya_check import assert_a1111_loadable
from .train_helpers import SAMPLE_DATASET, SMALL
from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.to_q = torch.nn.Linear(16, 24)
        self.to_k = torch.nn.Linear(16, 24, bias=False)
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.norm = torch.nn.LayerNorm(24)

    def forward(self, x):
        return self.norm(self.to_q(x) + self.to_k(x))


def _with_lora(**kw):
    from peft import LoraConfig, inject_adapter_in_model

    model = _Block()
    cfg = LoraConfig(r=4, lora_alpha=2, target_modules=["to_q", "to_k", "conv"], init_lora_weights=True, **kw)
    inject_adapter_in_model(cfg, model, adapter_name="default")
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)  # peft starts B at zero: make the LoRA path count
    return model


def _run(model, x, dtype=None):
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        out = model(x)
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))  # not a norm-invariant loss
    (out.float() * probe).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out.float(), x.grad, grads


@pytest.mark.parametrize("dtype,tol", [(None, 1e-5), (torch.bfloat16, 2e-2)], ids=["fp32", "bf16-autocast"])
def test_a_fused_lora_linear_gives_peft_s_output_and_gradients(dtype, tol):
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1))
    peft_model, fused_model = _with_lora(), _with_lora()
    if dtype is not None:  # frozen base weights in the compute dtype, fp32 LoRA masters: as the trainer does
        for m in (peft_model, fused_model):
            for n, p in m.named_parameters():
                if "lora_" not in n:
                    p.data = p.data.to(dtype)
    copies = fused_lora.fuse(fused_model)
    assert type(fused_model.to_q) is fused_lora.FusedLoraLinear and len(copies.layers) == 2
    assert type(fused_model.conv) is not fused_lora.FusedLoraLinear  # LoCon-style conv: peft's own
    a, b = _run(peft_model, x, dtype), _run(fused_model, x, dtype)
    assert torch.allclose(a[0], b[0], rtol=tol, atol=tol)
    assert torch.allclose(a[1].float(), b[1].float(), rtol=tol, atol=tol)
    assert a[2].keys() == b[2].keys() and len(a[2]) == 4
    for name in a[2]:
        assert b[2][name].dtype == torch.float32, name  # the masters get fp32 gradients
        scale = a[2][name].abs().max()
        assert (a[2][name] - b[2][name]).abs().max() <= tol * scale, name
    assert fused_model.state_dict().keys() == peft_model.state_dict().keys()  # the same names, the same file


def test_the_working_copies_follow_the_masters_after_every_optimizer_step_even_through_raw_writes():
    x = torch.randn(3, 16, generator=torch.Generator().manual_seed(2))
    model = _with_lora()
    for n, p in model.named_parameters():
        if "lora_" not in n:
            p.data = p.data.to(torch.bfloat16)
    copies = fused_lora.fuse(model)
    params = [p for p in model.parameters() if p.requires_grad]

    class RawWriter(torch.optim.Optimizer):
        """Writes through .data, as bitsandbytes' kernels write through raw pointers: no version bump."""

        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    p.data.add_(0.2)

    opt = RawWriter(params, {})
    opt.register_step_post_hook(lambda *_: copies.mark_stale())  # what fast_path.apply registers
    before = _run(model, x, torch.bfloat16)[0]
    opt.step()
    after = _run(model, x, torch.bfloat16)[0]
    fused_lora.unfuse(model)
    reference = _run(model, x, torch.bfloat16)[0]  # peft's path on the same, updated weights
    change, error = (after - before).abs().max(), (after - reference).abs().max()
    assert error < 0.2 * change, (error, change)  # the updated weights, up to bf16 rounding


def test_layers_the_fused_path_does_not_cover_keep_peft_s_forward():
    dropout = _with_lora(lora_dropout=0.1)
    assert fused_lora.fuse(dropout) is None and type(dropout.to_q).__name__ == "Linear"
    dora = _with_lora(use_dora=True)
    assert fused_lora.fuse(dora) is None
    model = _with_lora()
    fused_lora.fuse(model)
    x = torch.randn(2, 16)
    with torch.no_grad():
        model.to_q.enable_adapters(False)  # disabled adapters: the base layer alone, through peft
        assert torch.equal(model.to_q(x), model.to_q.base_layer(x))


def test_the_fused_step_dispatches_fewer_ops_than_peft_s():
    from torch.profiler import ProfilerActivity, profile

    def ops(model):
        x = torch.randn(4, 16)
        _run(model, x, torch.bfloat16)  # warm-up (and the first working-copy refresh)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            _run(model, x, torch.bfloat16)
        return sum(1 for e in prof.events() if e.name.startswith("aten::"))

    plain, fused = _with_lora(), _with_lora()
    for m in (plain, fused):
        for n, p in m.named_parameters():
            if "lora_" not in n:
                p.data = p.data.to(torch.bfloat16)
    fused_lora.fuse(fused)
    norms.keep_in_compute_dtype(fused)
    assert ops(fused) < 0.75 * ops(plain)


def _trainer(tmp: Path, arch: str, model: Path, fast: bool, toml: str, cpu_autocast: bool) -> Trainer:
    cfg = config.parse(SMALL + 'save_precision = "float"\n' + toml, arch)
    paths = RunPaths(model=model, dataset=SAMPLE_DATASET, model_dir=tmp / "model", tensorboard=tmp / "tb",
                     checkpoints=tmp / "ckpt", cache=tmp / "cache", output_name="fp")
    t = Trainer(cfg, paths, log=lambda m: None, fast=fast, cpu_autocast=cpu_autocast)
    t.setup()
    return t


def _step(t: Trainer, batch, i: int) -> float:
    t.optimizer.zero_grad(set_to_none=True)
    loss = t.loss(batch, i)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(t.params.values()), 1.0)
    t.optimizer.step()
    t.scheduler.step()
    return float(loss.detach())


@pytest.mark.parametrize("arch,toml,cpu_autocast,first", [
    ("sdxl", "mixed_precision = \"bf16\"\n", True, 2e-2),  # a GPU's path: bf16 autocast, bf16 frozen weights
    ("sd15", "", False, 1e-6),  # the CPU's fp32 path, text encoder trained (the SD 1.5 default)
], ids=["sdxl-bf16", "sd15-fp32"])
def test_the_first_20_steps_lose_what_peft_s_path_loses_and_the_lora_loads_fully_in_a1111(
        arch, toml, cpu_autocast, first, tmp_path, tiny_sd15_path, tiny_sdxl_path):
    """The first steps agree to the path's rounding (fp32: 1e-6; bf16: 2e-2). Later steps drift apart a little
    even in fp32: AdamW divides each gradient by its running RMS, so a 1-ulp difference in a near-zero gradient
    becomes a difference of up to lr in the update (seen: 0 for 5 steps, 3e-7 at step 6, 2e-3 by step 20). Over the
    20 steps the losses stay within the bf16 tolerance, 2e-2."""
    model = {"sd15": tiny_sd15_path, "sdxl": tiny_sdxl_path}[arch]
    toml += "network_dim = 4\nnetwork_alpha = 2\nlearning_rate = 1e-3\nunet_lr = 1e-3\ntext_encoder_lr = 1e-3\n" \
            "max_train_steps = 20\n"
    peft_t = _trainer(tmp_path / "peft", arch, model, False, toml, cpu_autocast)
    fast_t = _trainer(tmp_path / "fast", arch, model, True, toml, cpu_autocast)
    assert not any(isinstance(m, fused_lora.FusedLoraLinear) for m in peft_t.components.unet.modules())
    # SD 1.5's proj_in/proj_out are 1x1 convolutions (32 modules): peft's Conv2d, not fused.
    assert sum(isinstance(m, fused_lora.FusedLoraLinear) for m in fast_t.components.unet.modules()) == (
        722 if arch == "sdxl" else 160)
    batches = data.epoch_batches(peft_t.data, peft_t.cfg, 1, peft_t.cfg.train_batch_size)
    a, b = [], []
    for i in range(20):
        batch = batches[i % len(batches)]
        a.append(_step(peft_t, batch, i))
        b.append(_step(fast_t, batch, i))
    rel = [abs(x - y) / max(abs(x), 1e-6) for x, y in zip(a, b)]
    assert max(rel[:3]) < first and max(rel) < 2e-2, [f"{r:.1e}" for r in rel]
    moved = max(float(p.detach().abs().max()) for k, p in fast_t.params.items() if "lora_B" in k)
    assert moved > 0, "nothing trained"
    peft_t.session_id = fast_t.session_id = 1  # what run() sets before it saves
    lora_a = peft_t.save_lora(tmp_path / "peft.safetensors", 20, 0.0)
    lora_b = fast_t.save_lora(tmp_path / "fast.safetensors", 20, 0.0)
    counts = assert_a1111_loadable(lora_b, load_components(model, arch))
    assert counts["unet"] == (722 if arch == "sdxl" else 192)
    from safetensors.torch import load_file
    ta, tb = load_file(str(lora_a)), load_file(str(lora_b))
    assert ta.keys() == tb.keys()
    # The same weights up to that drift: at most about lr (1e-3) per step apart, against what training moved them.
    worst_w = max(float((ta[k] - tb[k]).abs().max()) for k in ta if "lora_up" in k)
    assert worst_w < 20 * 1e-3 and worst_w < moved, (worst_w, moved)


@pytest.mark.parametrize("network,fused", [
    # LoCon: the resnets' time_emb_proj linears join (182 fused); the 3x3 convolutions stay peft's
    ('network_args = ["conv_dim=4", "conv_alpha=2"]\n', 182),
    # DoRA (dora.py) scales each layer's input in a forward pre-hook: it runs before the fused forward as before peft's
    ('network_module = "lycoris.kohya"\nnetwork_args = ["dora_wd=True"]\n', 160),
], ids=["locon", "dora"])
def test_locon_and_dora_train_the_same_with_the_fast_path_on(network, fused, tmp_path, tiny_sd15_path):
    toml = network + "network_dim = 4\nnetwork_alpha = 2\nlearning_rate = 1e-3\nunet_lr = 1e-3\nmax_train_steps = 3\n"
    peft_t = _trainer(tmp_path / "peft", "sd15", tiny_sd15_path, False, toml, False)
    fast_t = _trainer(tmp_path / "fast", "sd15", tiny_sd15_path, True, toml, False)
    assert sum(isinstance(m, fused_lora.FusedLoraLinear) for m in fast_t.components.unet.modules()) == fused
    assert fast_t.params.keys() == peft_t.params.keys()
    batches = data.epoch_batches(peft_t.data, peft_t.cfg, 1, peft_t.cfg.train_batch_size)
    for i in range(3):
        a, b = _step(peft_t, batches[i % len(batches)], i), _step(fast_t, batches[i % len(batches)], i)
        assert abs(a - b) <= 1e-6 * abs(a), (i, a, b)
