"""Base-model load for training: straight into the compute dtype (the trainer now) vs fp32 first, then the frozen
weights cast to bf16 (the trainer before), on full-size random-weight SD 1.5 and SDXL files in the A1111 layout.

Each load runs in a fresh process (its own peak memory), page cache warm, alternating old and new. Measured: wall
time, peak RSS (VmHWM: anonymous memory plus the file pages it touched) and peak anonymous RSS (sampled every 5 ms:
the memory a load really allocates). On the CPU both paths convert on the CPU; on a GPU the new path moves the UNet's
fp16 tensors to the GPU and casts them there, which no CPU figure shows.

    .venv/trainer/bin/python bench/model/load_dtype.py [--families sd15 sdxl] [--repeat 2] [--dir /tmp/cloudlora-bench]
    .venv/trainer/bin/python bench/model/load_dtype.py --tiny --repeat 5    # the tiny test models instead

SDXL's old path needs about 14 GB of anonymous memory; it is skipped (and said so) when the machine has less than
that plus 4 GB available.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OLD_ANON_GB = {"sd15": 4.5, "sdxl": 14.5}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(path: str, mode: str) -> None:
    """One load in this process; prints a JSON line."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from cloudlora_backend.trainer.model.load import load_components

    peak = {"anon": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak["anon"] = max(peak["anon"], _status("RssAnon"))
            time.sleep(0.005)

    threading.Thread(target=sample, daemon=True).start()
    Path("/proc/self/clear_refs").write_text("5")
    t0 = time.perf_counter()
    if mode == "old":
        c = load_components(path)  # fp32
        for m in [c.unet, *c.text_encoders]:
            for p in m.parameters():
                p.data = p.data.to(torch.bfloat16)
    else:
        c = load_components(path, dtype=torch.bfloat16, vae_dtype=torch.float32, device="cpu")
    seconds = time.perf_counter() - t0
    done.set()
    peak["anon"] = max(peak["anon"], _status("RssAnon"))
    params = sum(p.numel() * p.element_size() for m in [c.unet, c.vae, *c.text_encoders] for p in m.parameters())
    print(json.dumps({"mode": mode, "seconds": seconds, "peak_rss_gib": _status("VmHWM") / 2**20,
                      "peak_anon_gib": peak["anon"] / 2**20, "model_bytes_gib": params / 2**30}), flush=True)


def available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", nargs="+", default=["sd15", "sdxl"])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dir", default="/tmp/cloudlora-bench")
    ap.add_argument("--tiny", action="store_true", help="the tiny test checkpoints (.cache/tiny) instead")
    ap.add_argument("--child", nargs=2, metavar=("PATH", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    sys.path.insert(0, str(ROOT / "bench" / "model"))
    import full_size

    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1")
    results = {}
    for family in args.families:
        path = Path(args.dir) / f"random-{family}-full.safetensors"
        if args.tiny:
            from cloudlora_backend.trainer.tiny import is_current, make_tiny_checkpoint

            path = ROOT / ".cache" / "tiny" / f"tiny-{family}.safetensors"
            if not is_current(path, family):
                make_tiny_checkpoint(family, path)
        elif not path.exists():
            t = time.perf_counter()
            full_size.write(path, family, "stream")
            print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s", flush=True)
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # page cache warm
        modes = ["old", "new"]
        if not args.tiny and available_gb() < OLD_ANON_GB[family] + 4:
            print(f"{family}: old path skipped: {available_gb():.1f} GB available, it needs about "
                  f"{OLD_ANON_GB[family]:.0f} GB + 4 GB of headroom", flush=True)
            modes = ["new"]
        runs = {m: [] for m in modes}
        for _ in range(args.repeat):
            for mode in modes:
                out = subprocess.run([sys.executable, __file__, "--child", str(path), mode], capture_output=True,
                                     text=True, env=env, check=True).stdout.strip().splitlines()[-1]
                runs[mode].append(json.loads(out))
                print(family, out, flush=True)
        results[family] = {"file_gb": path.stat().st_size / 1e9, "runs": runs}
    print("\n| model | path | load time (median) | peak RSS | peak anonymous RSS | model in memory |")
    print("|---|---|---|---|---|---|")
    for family, r in results.items():
        for mode, runs in r["runs"].items():
            label = "fp32, then cast to bf16 (before)" if mode == "old" else "straight to bf16, VAE fp32 (now)"
            print(f"| {'tiny ' if args.tiny else ''}{family} ({r['file_gb']:.3f} GB fp16 file) | {label} "
                  f"| {statistics.median(x['seconds'] for x in runs):.1f} s "
                  f"| {max(x['peak_rss_gib'] for x in runs):.2f} GiB | {max(x['peak_anon_gib'] for x in runs):.2f} GiB "
                  f"| {runs[0]['model_bytes_gib']:.2f} GiB |")
        if set(r["runs"]) == {"old", "new"}:
            o = statistics.median(x["seconds"] for x in r["runs"]["old"])
            n = statistics.median(x["seconds"] for x in r["runs"]["new"])
            ao = max(x["peak_anon_gib"] for x in r["runs"]["old"])
            an = max(x["peak_anon_gib"] for x in r["runs"]["new"])
            print(f"{family}: time new/old {n / o:.2f}, peak anonymous memory new/old {an / ao:.2f}")


if __name__ == "__main__":
    main()
