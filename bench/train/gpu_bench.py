"""GPU benchmark of the training step, one process, one call: the real trainer step (`Trainer.loss` + backward + clip
+ optimizer + lr schedule) on its fast path and on peft's own path, next to the bare eager peft-LoRA UNet step (the
baseline the GPU speed issue measured), for SD 1.5 at 512 px and SDXL at 1024 px, batch 1 and 4, gradient
checkpointing on and off. Prints it/s, images/s, MFU, the ratio to the bare step, peak GPU memory, CUDA kernels per
step (batch 1 rows), and the trainer's time to first step with its phases; the table comes last.

The trainer loads a full-size random-weight checkpoint in the A1111 layout (default init, built on the GPU, written
to --dir, so the page cache is warm as in the issue's "local file" target) and trains on 16 generated images with the
family defaults (SD 1.5 trains its text encoder; SDXL caches the text-encoder outputs). The bare step is a peft-LoRA
UNet from the same config with random cached latents and text outputs (the `run()` the issue's table quotes).

    .venv/trainer/bin/python bench/train/gpu_bench.py [--steps 8] [--budget-s 330] [--json out.json]
    .venv/trainer/bin/python bench/train/gpu_bench.py --tiny   # the tiny models on the CPU: checks the script only

FLOPs per image and step (REFERENCE §2): SD1.5 512 px 1.75 TFLOP (2.40 with gradient checkpointing), SDXL 1024 px
14.4 TFLOP (20.5 with gradient checkpointing). MFU = images/s x TFLOP per image / --peak-tflops (784: bf16 matmul
measured on the H200). Under --budget-s the remaining rows are skipped (and listed as skipped) so that the whole
call stays under 6 minutes; rows run in priority order (the issue's targets first).
"""
from __future__ import annotations

import argparse
import gc as gc_mod
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "model"))
try:
    import cloudlora_backend  # noqa: F401 - pip-installed (the trainer venv)
except ImportError:  # a bare checkout (the GPU machine): the import names from the extension's bootstrap
    import importlib.util

    _spec = importlib.util.spec_from_file_location("cloudlora_bootstrap", ROOT / "extension" / "bootstrap.py")
    _boot = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_boot)
    _boot.install()

from cloudlora_backend.trainer.model import archs
from cloudlora_backend.trainer.config import train_config as config
from cloudlora_backend.trainer.data import dataset as data
from cloudlora_backend.trainer.network import fused_lora, norms  # noqa: E402
from cloudlora_backend.trainer.network.lora import UNET_TARGETS  # noqa: E402
from cloudlora_backend.trainer.model.load import make_noise_scheduler  # noqa: E402
from cloudlora_backend.trainer.loop.noise import snr_weights  # noqa: E402
from cloudlora_backend.trainer.loop.train import RunPaths, Trainer  # noqa: E402

TFLOP = {("sd15", False): 1.75, ("sd15", True): 2.40, ("sdxl", False): 14.4, ("sdxl", True): 20.5}
SIZE = {"sd15": 512, "sdxl": 1024}
# (family, batch, gradient checkpointing), the issue's targets first.
ROWS = [("sdxl", 4, True), ("sdxl", 1, True), ("sd15", 4, False), ("sdxl", 4, False), ("sd15", 1, False),
        ("sdxl", 1, False), ("sd15", 4, True), ("sd15", 1, True)]
PATHS = ("fast", "peft", "bare")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0


def cuda_kernels(fn, device: torch.device) -> int | None:
    """CUDA kernels launched by one call of fn (None on the CPU)."""
    if device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        sync(device)
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


# --- the real trainer ------------------------------------------------------------------------------------------------

def make_dataset(folder: Path, size: int, n: int) -> Path:
    from PIL import Image

    sub = folder / "10_sks"
    if sub.is_dir() and len(list(sub.glob("*.png"))) == n:
        return folder
    sub.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        pixels = (torch.rand(size // 8, size // 8, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).resize((size, size), Image.BICUBIC).save(sub / f"{i:02d}.png")
        (sub / f"{i:02d}.txt").write_text(f"sks, random picture {i}", encoding="utf-8")
    return folder


def model_file(family: str, folder: Path, tiny: bool, device: torch.device) -> Path:
    if tiny:
        from cloudlora_backend.trainer.tiny import make_tiny_checkpoint

        return make_tiny_checkpoint(family, folder / f"tiny-{family}.safetensors")
    import full_size

    path = folder / f"random-{family}-full.safetensors"
    if not path.exists():
        full_size.write(path, family, "init", device=device)
    return path


def build_trainer(family: str, folder: Path, tiny: bool, device: torch.device, batch: int) -> Trainer:
    size = 64 if tiny else SIZE[family]
    toml = (f'resolution = "{size},{size}"\nmin_bucket_reso = {min(size, 256)}\nmax_bucket_reso = {max(size, 1024)}\n'
            f"train_batch_size = {batch}\nmax_train_steps = 100000\n")
    cfg = config.parse(toml, family)
    model = model_file(family, folder, tiny, device)
    dataset = make_dataset(folder / f"dataset-{family}", size, 16)
    paths = RunPaths(model=model, dataset=dataset, model_dir=folder / "out", tensorboard=folder / "tb",
                     checkpoints=folder / "ckpt", cache=folder / "cache")
    t = Trainer(cfg, paths, device=device, log=lambda m: None, cpu_autocast=tiny)  # --tiny: bf16 as on a GPU
    t.setup()
    return t


def set_path(t: Trainer, path: str) -> None:
    """The trainer's fast path, or peft's own layers and autocast's norms (the same weights either way)."""
    models = [t.components.unet, *t.components.text_encoders]
    for m in models:
        if path == "fast":
            fused_lora.fuse(m)
            if t.autocast_dtype is not None:
                norms.keep_in_compute_dtype(m)
        else:
            fused_lora.unfuse(m)
            norms.restore(m)


def set_checkpointing(t: Trainer, on: bool) -> None:
    unet = t.components.unet
    unet.enable_gradient_checkpointing() if on else unet.disable_gradient_checkpointing()
    if t.cfg.train_text_encoder:
        for te in t.components.text_encoders:
            te.gradient_checkpointing_enable() if on else te.gradient_checkpointing_disable()


def agreement(t: Trainer, batch) -> dict:
    """The fast and the peft path on the same weights, batch, noise and timesteps: loss and LoRA gradients, next to
    the bf16 noise floor (peft's path again with the latents scaled by 1 + 1e-3: on a random-weight model in bf16 a
    perturbation that small already moves the gradients; on the tiny models by tens of percent, while fused and
    peft agree to 4e-6 in fp32). The LoRA up-weights (zero at the start, tiny while the lr warms up) get random
    values for the check and are put back afterwards, so that the LoRA branch really counts."""
    ups = [p for k, p in t.params.items() if "lora_B" in k]
    saved = [p.detach().clone() for p in ups]
    g = torch.Generator(device=ups[0].device).manual_seed(0)
    with torch.no_grad():
        for p in ups:
            p.copy_(torch.randn(p.shape, device=p.device, generator=g) * 0.02)
    latents = t._latents
    out = {}
    for name, path, scale in (("peft", "peft", 0.0), ("fast", "fast", 0.0), ("floor", "peft", 1e-3)):
        set_path(t, path)
        t._latents = (lambda entries, s=scale: latents(entries) * (1 + s)) if scale else latents
        t.optimizer.zero_grad(set_to_none=True)
        loss = t.loss(batch, 987_654)
        loss.backward()
        grads = torch.cat([p.grad.flatten().float() for p in t.params.values() if p.grad is not None])
        out[name] = (float(loss.detach()), grads)
    t._latents = latents
    set_path(t, "fast")
    t.optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        for p, v in zip(ups, saved):
            p.copy_(v)
    (lp, gp), (lf, gf), (lo, go) = out["peft"], out["fast"], out["floor"]

    def rel(a, b):
        return float((a - b).norm() / b.norm().clamp_min(1e-12))
    return {"loss_peft": lp, "loss_fast": lf, "loss_rel_diff": abs(lf - lp) / max(abs(lp), 1e-12),
            "grad_rel_diff": rel(gf, gp), "grad_cosine": float(torch.nn.functional.cosine_similarity(gf, gp, dim=0)),
            "floor_loss_rel_diff": abs(lo - lp) / max(abs(lp), 1e-12), "floor_grad_rel_diff": rel(go, gp)}


def trainer_step(t: Trainer, batch, i: int) -> None:
    t.optimizer.zero_grad(set_to_none=True)
    t.loss(batch, i).backward()
    torch.nn.utils.clip_grad_norm_(list(t.params.values()), 1.0)
    t.optimizer.step()
    t.scheduler.step()


# --- the bare eager step (the issue's baseline) ----------------------------------------------------------------------

def build_bare(family: str, device: torch.device, tiny: bool):
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(archs.arch_dir(family, tiny) / "unet"))
    unet.requires_grad_(False)
    unet.to(device, torch.bfloat16)  # frozen base weights in the compute dtype
    unet.add_adapter(LoraConfig(r=32 if family == "sdxl" else 16, lora_alpha=16 if family == "sdxl" else 8,
                                target_modules=UNET_TARGETS))
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:
        p.data = p.data.float()
        p.requires_grad_(True)
    unet.train()
    return unet, params, torch.optim.AdamW(params, lr=1e-4)


def bare_step_fn(family: str, unet, params, opt, batch: int, device: torch.device, tiny: bool):
    sched = make_noise_scheduler()
    sched.alphas_cumprod = sched.alphas_cumprod.to(device)
    side = 8 if tiny else SIZE[family] // 8
    cfg = unet.config
    g = torch.Generator(device=device).manual_seed(0)
    latents = torch.randn(batch, 4, side, side, device=device, generator=g)
    ctx = torch.randn(batch, 77, cfg.cross_attention_dim, device=device, generator=g)
    kwargs = {}
    if family == "sdxl":
        pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        s = float(side * 8)
        kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(batch, pooled, device=device, generator=g),
                                       "time_ids": torch.tensor([[s, s, 0, 0, s, s]] * batch, device=device)}

    def step():
        opt.zero_grad(set_to_none=True)
        noise = torch.randn(latents.shape, device=device, generator=g)
        t = torch.randint(0, 1000, (batch,), device=device, generator=g)
        noisy = sched.add_noise(latents, noise, t)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            pred = unet(noisy, t, ctx, **kwargs).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise, reduction="none").mean([1, 2, 3])
        (loss * snr_weights(sched, t, 5.0, False)).mean().backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return step


# --- measuring -------------------------------------------------------------------------------------------------------

def measure(step, device: torch.device, steps: int, warmup: int, kernels: bool) -> dict:
    reset_peak(device)
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    seconds = (time.perf_counter() - t0) / steps
    out = {"s_per_step": seconds, "peak_gib": peak_gib(device)}
    if kernels:
        out["kernels"] = cuda_kernels(step, device)
    return out


def row_dict(family, batch, gc, path, m, peak_tflops, tiny) -> dict:
    sps = 1.0 / m["s_per_step"]
    ips = sps * batch
    return {"family": family, "resolution": 64 if tiny else SIZE[family], "batch": batch, "gradient_checkpointing": gc,
            "path": path, "it_s": sps, "images_s": ips, "mfu": ips * TFLOP[(family, gc)] / peak_tflops,
            "peak_gib": m["peak_gib"], "kernels": m.get("kernels")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--peak-tflops", type=float, default=784.0)
    ap.add_argument("--budget-s", type=float, default=330.0, help="skip the remaining rows after this many seconds")
    ap.add_argument("--families", nargs="+", default=["sdxl", "sd15"])
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    ap.add_argument("--dir", default="", help="where the random checkpoints and datasets go (default: a temp dir)")
    ap.add_argument("--json", default="")
    ap.add_argument("--tiny", action="store_true", help="the tiny models on the CPU: checks the script, no figures")
    args = ap.parse_args()
    if args.tiny:
        device = torch.device("cpu")
        args.steps, args.warmup = min(args.steps, 2), 1
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: run with --tiny to check the script on the CPU "
                         "(bench/train/cpu_bench.py measures the CPU)")
    else:
        device = torch.device("cuda")
    started = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="cloudlora-gpu-bench-") if not args.dir else None
    folder = Path(args.dir or tmp.name)
    rows, firsts, skipped = [], {}, []
    for family in args.families:
        wanted = [r for r in ROWS if r[0] == family]
        if time.perf_counter() - started > args.budget_s:
            skipped += [(*r, p) for r in wanted for p in args.paths]
            continue
        trainer = None
        if {"fast", "peft"} & set(args.paths):
            # Written first: the time to first step starts with the page cache warm and the images on disk.
            model_file(family, folder, args.tiny, device)
            make_dataset(folder / f"dataset-{family}", 64 if args.tiny else SIZE[family], 16)
            t0 = time.perf_counter()
            trainer = build_trainer(family, folder, args.tiny, device, batch=4)
            batches = data.epoch_batches(trainer.data, trainer.cfg, 1, 4)
            set_path(trainer, "fast")
            trainer_step(trainer, batches[0][:1], 0)
            sync(device)
            firsts[family] = {"first_step_s": time.perf_counter() - t0, "phases": trainer.clock.record()["seconds"],
                              "setup_peak_gib": trainer.clock.record().get("peak_gpu_gib", {}),
                              "agreement": agreement(trainer, batches[1][:1])}
            print(json.dumps({family: firsts[family]}), flush=True)
        for fam, batch, gc in wanted:
            for path in [p for p in ("fast", "peft") if p in args.paths]:
                if time.perf_counter() - started > args.budget_s:
                    skipped.append((fam, batch, gc, path))
                    continue
                set_path(trainer, path)
                set_checkpointing(trainer, gc)
                micro = [batches[i % len(batches)][:batch] for i in range(64)]
                counter = {"i": 0}

                def step():
                    trainer_step(trainer, micro[counter["i"] % 64], counter["i"])
                    counter["i"] += 1
                try:
                    m = measure(step, device, args.steps, args.warmup, kernels=batch == 1)
                    rows.append(row_dict(fam, batch, gc, path, m, args.peak_tflops, args.tiny))
                except torch.OutOfMemoryError:
                    rows.append({"family": fam, "batch": batch, "gradient_checkpointing": gc, "path": path,
                                 "error": "out of memory"})
                print(json.dumps(rows[-1]), flush=True)
        del trainer
        gc_mod.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if "bare" in args.paths and time.perf_counter() - started <= args.budget_s:
            unet, params, opt = build_bare(family, device, args.tiny)
            for fam, batch, gc in wanted:
                if time.perf_counter() - started > args.budget_s:
                    skipped.append((fam, batch, gc, "bare"))
                    continue
                unet.enable_gradient_checkpointing() if gc else unet.disable_gradient_checkpointing()
                try:
                    m = measure(bare_step_fn(fam, unet, params, opt, batch, device, args.tiny), device, args.steps,
                                args.warmup, kernels=batch == 1)
                    rows.append(row_dict(fam, batch, gc, "bare", m, args.peak_tflops, args.tiny))
                except torch.OutOfMemoryError:
                    rows.append({"family": fam, "batch": batch, "gradient_checkpointing": gc, "path": "bare",
                                 "error": "out of memory"})
                print(json.dumps(rows[-1]), flush=True)
            del unet, params, opt
            gc_mod.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        elif "bare" in args.paths:
            skipped += [(*r, "bare") for r in wanted]
    total = time.perf_counter() - started
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "first_step": firsts, "skipped": skipped,
                                               "total_s": total, "device": str(device),
                                               "gpu": torch.cuda.get_device_name() if device.type == "cuda" else "",
                                               "torch": torch.__version__}, indent=2))
    if tmp is not None:
        tmp.cleanup()
    print_tables(rows, firsts, skipped, total, device, args.tiny)


def print_tables(rows, firsts, skipped, total, device, tiny) -> None:
    bare = {(r["family"], r["batch"], r["gradient_checkpointing"]): r for r in rows
            if r["path"] == "bare" and "error" not in r}
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (--tiny: checks the script, no figures)"
    print(f"\n{gpu}, torch {torch.__version__}, whole run {total:.0f} s")
    for fam, f in firsts.items():
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in f["phases"].items())
        a = f["agreement"]
        print(f"{fam}: time to first step {f['first_step_s']:.1f} s from Trainer() with the imports done ({phases}); "
              f"peak GPU memory by phase {f['setup_peak_gib']}; fast vs peft path on one batch: loss "
              f"{a['loss_fast']:.5f} vs {a['loss_peft']:.5f} (relative {a['loss_rel_diff']:.1e}), LoRA gradients "
              f"relative difference {a['grad_rel_diff']:.1e}, cosine {a['grad_cosine']:.5f}; bf16 noise floor "
              f"(peft, latents x 1.001): loss {a['floor_loss_rel_diff']:.1e}, gradients {a['floor_grad_rel_diff']:.1e}")
    print("\n| model | batch | checkpointing | step | it/s | images/s | MFU | vs bare | peak GPU memory "
          "| CUDA kernels/step |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    order = {p: i for i, p in enumerate(PATHS)}
    for r in sorted(rows, key=lambda r: (ROWS.index((r["family"], r["batch"], r["gradient_checkpointing"])),
                                         order[r["path"]])):
        label = f"{r['family']} {64 if tiny else SIZE[r['family']]} px"
        ckpt = "on" if r["gradient_checkpointing"] else "off"
        step = {"fast": "trainer (fast path)", "peft": "trainer (peft path)", "bare": "bare eager UNet"}[r["path"]]
        if "error" in r:
            print(f"| {label} | {r['batch']} | {ckpt} | {step} | {r['error']} | | | | | |")
            continue
        b = bare.get((r["family"], r["batch"], r["gradient_checkpointing"]))
        ratio = f"{r['images_s'] / b['images_s']:.2f}x" if b else "-"
        print(f"| {label} | {r['batch']} | {ckpt} | {step} | {r['it_s']:.2f} | {r['images_s']:.2f} "
              f"| {100 * r['mfu']:.1f} % | {ratio} | {r['peak_gib']:.1f} GiB | {r['kernels'] or '-'} |")
    for fam, batch, gc, path in skipped:
        print(f"| {fam} | {batch} | {'on' if gc else 'off'} | {path} | skipped: time budget | | | | | |")


if __name__ == "__main__":
    main()
