"""GPU benchmark of the LoRA training step on full-size random-weight models built from the shipped architecture
configs (cloud_backend/trainer/arch/): SD1.5 at 512 px and SDXL at 1024 px, batch 1 and 4, bf16 autocast with fp32
LoRA weights, cached latents and text-encoder outputs (random tensors of the real shapes: the UNet step is what is
measured). Reports steps/s, images/s, peak VRAM, MFU against the REFERENCE FLOP counts, and time to first step.

    .venv/trainer/bin/python bench/train/gpu_bench.py [--steps 30] [--peak-tflops 800] [--gradient-checkpointing]
    .venv/trainer/bin/python bench/train/gpu_bench.py --smoke-cpu --steps 2   # checks the script on CPU only

FLOPs per image and step (REFERENCE §2): SD1.5 512 px 1.75 TFLOP (2.40 with gradient checkpointing), SDXL 1024 px
14.4 TFLOP (20.5 with gradient checkpointing). MFU = images/s x TFLOP per image / peak TFLOP/s (H100 bf16 ~800).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cloudlora_backend.trainer import archs
from cloudlora_backend.trainer.lora import UNET_TARGETS
from cloudlora_backend.trainer.models import make_noise_scheduler
from cloudlora_backend.trainer.train import _snr_weights

TFLOP = {("sd15", False): 1.75, ("sd15", True): 2.40, ("sdxl", False): 14.4, ("sdxl", True): 20.5}
SIZE = {"sd15": 512, "sdxl": 1024}


def build_unet(family: str, device, gradient_checkpointing: bool, tiny: bool = False):
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(archs.arch_dir(family, tiny) / "unet"))
    unet.requires_grad_(False)
    unet.to(device, torch.bfloat16)  # frozen base weights in the compute dtype, as the trainer does
    unet.add_adapter(LoraConfig(r=32 if family == "sdxl" else 16, lora_alpha=16 if family == "sdxl" else 8,
                                target_modules=UNET_TARGETS))
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:
        p.data = p.data.float()
        p.requires_grad_(True)
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    return unet, params


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(family: str, batch: int, steps: int, gc: bool, peak: float, smoke: bool = False) -> dict:
    """smoke: the tiny configs on CPU, only to check that the script runs (its numbers mean nothing)."""
    device = torch.device("cpu" if smoke else "cuda")
    if not smoke:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    unet, params = build_unet(family, device, gc, tiny=smoke)
    opt = torch.optim.AdamW(params, lr=1e-4)
    sched = make_noise_scheduler()
    sched.alphas_cumprod = sched.alphas_cumprod.to(device)
    side = 8 if smoke else SIZE[family] // 8
    cfg = unet.config
    g = torch.Generator(device=device).manual_seed(0)
    latents = torch.randn(batch, 4, side, side, device=device, generator=g)  # cached latents
    ctx = torch.randn(batch, 77, cfg.cross_attention_dim, device=device, generator=g)  # cached text outputs
    kwargs = {}
    if family == "sdxl":
        pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, pooled, device=device, generator=g),
            "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * batch, device=device)}

    def step():
        opt.zero_grad(set_to_none=True)
        noise = torch.randn(latents.shape, device=device, generator=g)
        t = torch.randint(0, 1000, (batch,), device=device, generator=g)
        noisy = sched.add_noise(latents, noise, t)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            pred = unet(noisy, t, ctx, **kwargs).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise, reduction="none").mean([1, 2, 3])
        (loss * _snr_weights(sched, t, 5.0, False)).mean().backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    step()
    _sync(device)
    first = time.perf_counter() - t0
    for _ in range(3):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    sps = steps / (time.perf_counter() - start)
    ips = sps * batch
    return {"family": family, "resolution": SIZE[family], "batch": batch, "gradient_checkpointing": gc,
            "steps_per_s": sps, "images_per_s": ips, "ms_per_image": 1000 / ips,
            "peak_vram_gib": torch.cuda.max_memory_allocated() / 2**30 if not smoke else 0.0,
            "mfu": ips * TFLOP[(family, gc)] / peak, "time_to_first_step_s": first,
            "gpu": torch.cuda.get_device_name() if not smoke else "cpu (smoke)"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--peak-tflops", type=float, default=800.0)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--json", default="")
    ap.add_argument("--smoke-cpu", action="store_true", help="tiny configs on CPU: checks the script, numbers mean nothing")
    args = ap.parse_args()
    if not torch.cuda.is_available() and not args.smoke_cpu:
        raise SystemExit("no CUDA GPU here: this benchmark needs one (the CPU one is bench/train/cpu_bench.py)")
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    for family, batch in [("sd15", 1), ("sd15", 4), ("sdxl", 1), ("sdxl", 4)]:
        try:
            rows.append(run(family, batch, args.steps, args.gradient_checkpointing, args.peak_tflops, args.smoke_cpu))
        except torch.OutOfMemoryError:
            rows.append({"family": family, "batch": batch, "error": "out of memory"})
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        print(json.dumps(rows[-1]), flush=True)
    print("| model | batch | steps/s | images/s | ms/image | peak VRAM | MFU | time to first step |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['family']} | {r['batch']} | {r['error']} | | | | | |")
            continue
        print(f"| {r['family']} {r['resolution']} px | {r['batch']} | {r['steps_per_s']:.2f} | {r['images_per_s']:.2f} "
              f"| {r['ms_per_image']:.1f} | {r['peak_vram_gib']:.1f} GiB | {100 * r['mfu']:.0f} % "
              f"| {r['time_to_first_step_s']:.1f} s |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
