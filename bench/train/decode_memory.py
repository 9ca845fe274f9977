"""Sample decode memory: the full-size SDXL VAE (random weights, fp32) decoding one 1024 px image whole vs in the
512 px tiles the trainer's samples use now (sampling.decode), on the CPU. Each decode runs in a fresh process;
measured: wall time and the peak anonymous memory above the loaded VAE (sampled every 5 ms), the CPU stand-in for
the decode's GPU activation memory (same tensors, same fp32). No GPU figure: none was lent to this task.

    .venv/trainer/bin/python bench/train/decode_memory.py [--size 1024] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _anon_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def child(size: int, tile: int, threads: int) -> None:
    import torch
    from diffusers import AutoencoderKL

    from cloudlora_backend.trainer.model import archs
    from cloudlora_backend.trainer.loop import sampling

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(archs.arch_dir("sdxl") / "vae")).eval()
    pipe = type("P", (), {})()  # what sampling.decode reads: .vae and .image_processor
    from diffusers.image_processor import VaeImageProcessor

    pipe.vae, pipe.image_processor = vae, VaeImageProcessor(vae_scale_factor=8)
    latents = torch.randn(1, 4, size // 8, size // 8)
    base = _anon_kib()
    peak = {"kib": base}
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak["kib"] = max(peak["kib"], _anon_kib())
            time.sleep(0.005)

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    image = sampling.decode(pipe, latents, tile_px=tile)
    seconds = time.perf_counter() - t0
    done.set()
    print(json.dumps({"tile": tile, "seconds": seconds, "peak_above_vae_gib": (peak["kib"] - base) / 2**20,
                      "size": list(image.size)}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1")
    rows = []
    for tile in (100_000, 512):  # whole (no tiling), then the trainer's 512 px tiles
        out = subprocess.run([sys.executable, __file__, "--child", str(args.size), str(tile), str(args.threads)],
                             capture_output=True, text=True, env=env, check=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
        print(out, flush=True)
    whole, tiled = rows
    print(f"\n| SDXL VAE decode, {args.size} px, fp32, CPU | time | peak memory above the VAE |")
    print("|---|---|---|")
    print(f"| whole image (before) | {whole['seconds']:.1f} s | {whole['peak_above_vae_gib']:.2f} GiB |")
    print(f"| 512 px tiles (now) | {tiled['seconds']:.1f} s | {tiled['peak_above_vae_gib']:.2f} GiB |")
    print(f"tiled/whole: time {tiled['seconds'] / whole['seconds']:.2f}, memory "
          f"{tiled['peak_above_vae_gib'] / whole['peak_above_vae_gib']:.2f}")


if __name__ == "__main__":
    main()
