"""Base-model load time: load_components vs diffusers' own pipeline from_single_file, same file, same run.

A full-size SD1.5 checkpoint with random weights (the real layout: 2.13 GB in fp16, like v1-5-pruned-emaonly) is
written once to .cache/bench/. Usage: .venv/trainer/bin/python bench/model/bench_load.py [--repeat N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from cloudlora_backend.trainer.model import archs, singlefile  # noqa: E402
from cloudlora_backend.trainer.model.load import load_components  # noqa: E402
from cloudlora_backend.trainer.data.tokenizer import tokenizers_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FILE = ROOT / ".cache" / "bench" / "random-sd15-full.safetensors"


def make_file() -> Path:
    if FILE.exists():
        return FILE
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = archs.arch_dir("sd15")
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float16)  # build in half precision: half the memory
    try:
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        te = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
    finally:
        torch.set_default_dtype(torch.float32)
    return singlefile.write_single_file(FILE, "sd15", unet, vae, [te], dtype=torch.float16)


def ours(dtype):
    return load_components(FILE, dtype=dtype)


def baseline(dtype):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_single_file(str(FILE), config=str(archs.arch_dir("sd15")),
                                                    local_files_only=True, torch_dtype=dtype,
                                                    tokenizer=tokenizers_for("sd15")[0], safety_checker=None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    make_file()
    ours(torch.float16), baseline(torch.float16)  # warm the page cache and imports for both
    results = {}
    for dtype in (torch.float16, torch.float32):
        for name, fn in (("load_components", ours), ("diffusers from_single_file", baseline)):
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                fn(dtype)
                times.append(time.perf_counter() - t)
            results[f"{name} {str(dtype).split('.')[-1]}"] = statistics.median(times)
    for dtype in ("float16", "float32"):
        a, b = results[f"load_components {dtype}"], results[f"diffusers from_single_file {dtype}"]
        print(f"{dtype}: load_components {a:.2f} s, diffusers from_single_file {b:.2f} s, ratio {a / b:.2f}")
    print(json.dumps({"file_bytes": FILE.stat().st_size, "median_s": results, "cpus": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
