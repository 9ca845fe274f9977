"""Dispatched ops per training step, counted with torch.profiler on the tiny models (CPU; no GPU needed): the real
trainer step (Trainer.loss + backward + clip + optimizer + lr schedule) with peft's own LoRA layers (the baseline,
`Trainer(fast=False)`) against the fast path (fused LoRA linears, compute-dtype norms), in the same run, on the same
batches, from the same initial weights. Also checks exactness: the per-step losses of the first --steps steps of both.

The tiny models have the real layer layout (722 LoRA modules in SDXL's UNet, 192 in SD 1.5's, the same blocks), so
the count structure per step is that of the full-size models; the widths differ, so the time per op does not.
Mixed precision runs as on a GPU (bf16 autocast, frozen weights in bf16, fp32 LoRA masters), and with
--cuda-autocast (the default) CPU autocast is made to run layer_norm and group_norm in fp32 as CUDA's autocast does,
so the casts a GPU step dispatches are counted too. "kernel-like" counts the ops that would launch a GPU kernel:
leaf aten ops that are not views or metadata.

    OMP_WAIT_POLICY=PASSIVE .venv/trainer/bin/python bench/train/op_count.py [--arch sdxl sd15] [--steps 20]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cloudlora_backend.trainer.config import train_config as config
from cloudlora_backend.trainer.data import dataset as data  # noqa: E402
from cloudlora_backend.trainer.tiny import is_current, make_tiny_checkpoint  # noqa: E402
from cloudlora_backend.trainer.loop.train import RunPaths, Trainer  # noqa: E402

SMALL = 'resolution = "64,64"\nmin_bucket_reso = 64\nmax_bucket_reso = 128\n'
# Ops that launch no kernel on a GPU (views, metadata, allocation without a fill).
NO_KERNEL = {
    "aten::view", "aten::reshape", "aten::_reshape_alias", "aten::as_strided", "aten::t", "aten::transpose",
    "aten::permute", "aten::expand", "aten::unsqueeze", "aten::squeeze", "aten::slice", "aten::select",
    "aten::detach", "aten::detach_", "aten::alias", "aten::_unsafe_view", "aten::empty", "aten::empty_like",
    "aten::empty_strided", "aten::resize_", "aten::split", "aten::chunk", "aten::unbind", "aten::narrow",
    "aten::numpy_T", "aten::flatten", "aten::unflatten", "aten::view_as", "aten::expand_as", "aten::lift_fresh",
    "aten::result_type", "aten::is_nonzero", "aten::item", "aten::_local_scalar_dense", "aten::size",
    "aten::stride", "aten::contiguous", "aten::set_", "aten::_has_compatible_shallow_copy_type",
    "aten::unsafe_split", "aten::unsafe_chunk", "aten::split_with_sizes", "aten::_nested_tensor_from_mask",
    "aten::resolve_conj", "aten::resolve_neg", "aten::to", "aten::_to_copy", "aten::type_as",
}


def cuda_like_autocast() -> object:
    """CPU autocast runs group_norm and layer_norm in bf16; CUDA's runs them in fp32. This makes CPU autocast do as
    CUDA does (for this process), so the counts include the casts a GPU step has."""
    lib = torch.library.Library("aten", "IMPL")
    keys = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)

    def fp32(op):
        def kernel(*args, **kwargs):
            with torch._C._ExcludeDispatchKeyGuard(keys):
                args = [a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
                return op(*args, **kwargs)
        return kernel

    lib.impl("layer_norm", fp32(torch.ops.aten.layer_norm.default), "AutocastCPU")
    lib.impl("group_norm", fp32(torch.ops.aten.group_norm.default), "AutocastCPU")
    return lib  # registrations live as long as this object


def tiny(arch: str) -> Path:
    path = ROOT / ".cache" / "tiny" / f"tiny-{arch}.safetensors"
    if not is_current(path, arch):
        make_tiny_checkpoint(arch, path)
    return path


def trainer(arch: str, batch: int, gc: str, fast: bool, tmp: Path) -> Trainer:
    toml = SMALL + f"train_batch_size = {batch}\nmax_train_steps = 1000\nmixed_precision = \"bf16\"\n"
    if gc != "default":
        toml += f"gradient_checkpointing = {'true' if gc == 'on' else 'false'}\n"
    cfg = config.parse(toml, arch)
    paths = RunPaths(model=tiny(arch), dataset=ROOT / "samples" / "dataset", model_dir=tmp / "m",
                     tensorboard=tmp / "tb", checkpoints=tmp / "c", cache=tmp / "cache")
    t = Trainer(cfg, paths, log=lambda m: None, cpu_autocast=True, fast=fast)
    t.setup()
    for group in t.optimizer.param_groups:  # the multi-tensor optimizer a GPU run gets (on a CPU: per tensor)
        group["foreach"] = True
    return t


def step(t: Trainer, batch, i: int) -> float:
    t.optimizer.zero_grad(set_to_none=True)
    loss = t.loss(batch, i)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(t.params.values()), 1.0, foreach=True)  # as on a GPU
    t.optimizer.step()
    t.scheduler.step()
    return float(loss.detach())


def count(t: Trainer, batch, i: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(t, batch, i)
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    memo: dict[int, bool] = {}

    def launches(e) -> bool:
        """Would this op launch a kernel of its own: not a view/metadata op, and no aten op inside it does.
        A foreach op counts once (a few multi-tensor kernels on a GPU; its per-tensor loop is the CPU's)."""
        key = id(e)
        if key not in memo:
            if e.name.startswith("aten::_foreach_"):
                memo[key] = True
            else:
                memo[key] = e.name not in NO_KERNEL and not any(
                    c.name.startswith("aten::") and (launches(c) or c.name.startswith("aten::_foreach_"))
                    for c in e.cpu_children)
        return memo[key]

    def in_foreach(e) -> bool:
        p = e.cpu_parent
        while p is not None:
            if p.name.startswith("aten::_foreach_"):
                return True
            p = p.cpu_parent
        return False

    kernels = [e for e in events if launches(e) and not in_foreach(e)]
    # Casts are dispatched as aten::to/_to_copy with a copy_ leaf: count them by their parent.
    casts = sum(1 for e in events if e.name == "aten::_to_copy")
    by_name = collections.Counter(e.name for e in kernels)
    return {"aten_ops": len(events), "kernel_like": len(kernels), "casts": casts, "top": by_name.most_common(12)}


def run(arch: str, batch: int, gc: str, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        base = trainer(arch, batch, gc, False, Path(tmp) / "base")
        fast = trainer(arch, batch, gc, True, Path(tmp) / "fast")
        batches = data.epoch_batches(base.data, base.cfg, 1, batch)
        losses = {"base": [], "fast": []}
        for i in range(steps):  # interleaved: the same batches and noise, step for step
            b = batches[i % len(batches)]
            losses["base"].append(step(base, b, i))
            losses["fast"].append(step(fast, b, i))
        b = batches[steps % len(batches)]
        counts = {"base": count(base, b, steps), "fast": count(fast, b, steps)}
        worst = max(abs(x - y) / max(abs(x), 1e-6) for x, y in zip(losses["base"], losses["fast"]))
        return {"arch": arch, "batch": batch, "gradient_checkpointing": base.cfg.gradient_checkpointing,
                "lora_modules": sum(1 for k in base.params if k.endswith("lora_A.default.weight")),
                "counts": counts, "losses": losses, "worst_rel_loss_diff": worst}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", nargs="+", default=["sdxl", "sd15"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--gc", choices=["default", "on", "off"], nargs="+", default=["default"])
    ap.add_argument("--steps", type=int, default=20, help="steps compared for exactness before counting one")
    ap.add_argument("--no-cuda-autocast", action="store_true", help="keep CPU autocast's own bf16 norms")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lib = None if args.no_cuda_autocast else cuda_like_autocast()  # noqa: F841 - kept alive for the run
    rows = [run(a, args.batch, g, args.steps) for a in args.arch for g in args.gc]
    print("| model | batch | checkpointing | LoRA modules | aten ops: peft | fast | ratio | kernel-like: peft | fast "
          "| ratio | casts: peft | fast | loss, worst relative diff over the steps |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, b = r["counts"]["base"], r["counts"]["fast"]
        print(f"| tiny {r['arch']} | {r['batch']} | {'on' if r['gradient_checkpointing'] else 'off'} "
              f"| {r['lora_modules']} | {a['aten_ops']:,} | {b['aten_ops']:,} | {b['aten_ops'] / a['aten_ops']:.2f} "
              f"| {a['kernel_like']:,} | {b['kernel_like']:,} | {b['kernel_like'] / a['kernel_like']:.2f} "
              f"| {a['casts']:,} | {b['casts']:,} | {r['worst_rel_loss_diff']:.2e} |")
    for r in rows:
        print(f"\n{r['arch']} top kernel-like ops, peft: {r['counts']['base']['top']}")
        print(f"{r['arch']} top kernel-like ops, fast: {r['counts']['fast']['top']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
