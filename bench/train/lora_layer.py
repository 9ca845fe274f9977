"""CPU time per LoRA linear, fused (cloud_backend/trainer/network/fused_lora.py) vs peft's own, in the regime of a
launch-bound GPU step: bf16 autocast, bf16 frozen weights, fp32 LoRA masters, layers so small that the time is the
ops' fixed cost. Forward + backward of 50 stacked layers, median of 30 rounds, the two interleaved.

    OMP_NUM_THREADS=1 .venv/trainer/bin/python bench/train/lora_layer.py [--width 16] [--rounds 30]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from cloudlora_backend.trainer.network import fused_lora


def stack(width: int, n: int):
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(n)])
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=2, target_modules=[str(i) for i in range(n)]), model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
        if "lora_" not in name:
            p.data = p.data.bfloat16()
    return model


def per_layer_us(model, x, n: int, reps: int = 10) -> float:
    t = time.perf_counter()
    for _ in range(reps):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(x)
        y.float().sum().backward()
    return (time.perf_counter() - t) / reps / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--layers", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    peft_model, fused_model = stack(args.width, args.layers), stack(args.width, args.layers)
    fused_lora.fuse(fused_model)
    x = torch.randn(1, 4, args.width)
    a, b = [], []
    for _ in range(args.rounds):
        a.append(per_layer_us(peft_model, x, args.layers))
        b.append(per_layer_us(fused_model, x, args.layers))
    pa, pb = statistics.median(a), statistics.median(b)
    print(f"us per LoRA linear, forward + backward (median of {args.rounds}): peft {pa:.0f}, fused {pb:.0f}, "
          f"fused/peft {pb / pa:.2f}")


if __name__ == "__main__":
    main()
