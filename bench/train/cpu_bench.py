"""CPU benchmark of the trainer on the tiny models: steps/s of the real training step (its fast path, and peft's own
layers) against a bare peft UNet step on the same model and shapes (the baseline, measured in the same run), time to
first step, and the end-to-end time of the trainer entrypoint on the sample dataset (the README main command's job).

    OMP_WAIT_POLICY=PASSIVE .venv/trainer/bin/python bench/train/cpu_bench.py [--steps 20] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cloudlora_backend.trainer.config import train_config as config
from cloudlora_backend.trainer.data import dataset as data
from cloudlora_backend.trainer.network import fused_lora  # noqa: E402
from cloudlora_backend.trainer.tiny import is_current, make_tiny_checkpoint  # noqa: E402
from cloudlora_backend.trainer.loop.train import RunPaths, Trainer  # noqa: E402

SMALL = 'resolution = "64,64"\nmin_bucket_reso = 64\nmax_bucket_reso = 128\n'


def tiny(arch: str) -> Path:
    path = ROOT / ".cache" / "tiny" / f"tiny-{arch}.safetensors"
    if not is_current(path, arch):
        make_tiny_checkpoint(arch, path)
    return path


def full_step(t: Trainer, batch, i: int) -> None:
    t.optimizer.zero_grad(set_to_none=True)
    t.loss(batch, i).backward()
    torch.nn.utils.clip_grad_norm_(list(t.params.values()), 1.0)
    t.optimizer.step()
    t.scheduler.step()


def peft_path(t: Trainer, on: bool) -> None:
    """peft's own LoRA layers (on) or the trainer's fused ones (off), on the same weights."""
    for m in [t.components.unet, *t.components.text_encoders]:
        fused_lora.unfuse(m) if on else fused_lora.fuse(m)


def bare_step(unet, opt, latents, ctx, kwargs, g) -> None:
    """The floor: one LoRA UNet forward/backward and optimizer step, no data, text encoders or scheduler."""
    opt.zero_grad(set_to_none=True)
    noise = torch.randn(latents.shape, generator=g)
    t = torch.randint(0, 1000, (latents.shape[0],), generator=g)
    pred = unet(latents + noise, t, ctx, **kwargs).sample
    torch.nn.functional.mse_loss(pred, noise).backward()
    opt.step()


def bench_arch(arch: str, batch: int, steps: int, tmp: Path) -> dict:
    t0 = time.perf_counter()
    cfg = config.parse(SMALL + f"train_batch_size = {batch}\nmax_train_steps = 1000\n", arch)
    paths = RunPaths(model=tiny(arch), dataset=ROOT / "samples" / "dataset", model_dir=tmp / "m",
                     tensorboard=tmp / "tb", checkpoints=tmp / "c", cache=tmp / "cache")
    t = Trainer(cfg, paths, log=lambda m: None)
    t.setup()
    batches = data.epoch_batches(t.data, cfg, 1, batch)
    full_step(t, batches[0], 0)
    first = time.perf_counter() - t0
    for i in range(1, 3):
        full_step(t, batches[i], i)

    unet = t.components.unet
    opt = torch.optim.AdamW([p for k, p in t.params.items() if k.startswith("unet.")], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, 4, 8, 8, generator=g)
    hidden, pooled = t._text([e.caption for e in batches[0]])
    ctx = hidden.detach()
    kwargs = {}
    if arch == "sdxl":
        kwargs = {"added_cond_kwargs": {"text_embeds": pooled.detach(),
                                        "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * batch)}}
    for _ in range(2):
        bare_step(unet, opt, latents, ctx, kwargs, g)
    # Interleaved, so that the machine's changing load hits all three alike. The bare step runs peft's own layers.
    ours_s = peft_s = bare_s = 0.0
    for i in range(steps):
        start = time.perf_counter()
        full_step(t, batches[(i + 3) % len(batches)], i + 3)
        mid = time.perf_counter()
        peft_path(t, True)
        full_step(t, batches[(i + 3) % len(batches)], i + 3)
        mid2 = time.perf_counter()
        bare_step(unet, opt, latents, ctx, kwargs, g)
        end = time.perf_counter()
        peft_path(t, False)
        ours_s, peft_s, bare_s = ours_s + mid - start, peft_s + mid2 - mid, bare_s + end - mid2
    ours, peft, bare = steps / ours_s, steps / peft_s, steps / bare_s
    return {"arch": arch, "batch": batch, "steps_per_s": ours, "images_per_s": ours * batch, "peft_steps_per_s": peft,
            "bare_steps_per_s": bare, "ratio_to_bare": ours / bare, "peft_ratio_to_bare": peft / bare,
            "time_to_first_step_s": first}


def bench_entrypoint(tmp: Path, steps: int) -> dict:
    """The sample dataset through `python -m cloudlora_backend.trainer` (tiny SD1.5, 64 px): process start to LoRA."""
    root = tmp / "job"
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "data" / "model").mkdir(parents=True)
    (root / "input" / "data" / "config").mkdir(parents=True)
    os.symlink(tiny("sd15"), root / "input" / "data" / "model" / "tiny-sd15.safetensors")
    os.symlink(ROOT / "samples" / "dataset", root / "input" / "data" / "dataset")
    (root / "input" / "data" / "config" / "config.toml").write_text(SMALL)
    (root / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({"output_name": "demo", "max_train_steps": str(steps)}))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cloudlora_backend.trainer", "--root", str(root)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {"steps": steps, "wall_s": wall, "lora": (root / "model" / "demo.safetensors").is_file()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch, batch in [("sd15", 1), ("sd15", 2), ("sdxl", 1), ("sdxl", 2)]:
            rows.append(bench_arch(arch, batch, args.steps, Path(tmp) / f"{arch}{batch}"))
            print(json.dumps(rows[-1]), flush=True)
        e2e = bench_entrypoint(Path(tmp), 10)
    print(json.dumps(e2e))
    print(f"\ntorch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    print("| model | batch | steps/s | images/s | peft path steps/s | bare UNet step/s | ours / bare "
          "| peft path / bare | ours / peft path | time to first step |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| tiny {r['arch']} 64 px | {r['batch']} | {r['steps_per_s']:.2f} | {r['images_per_s']:.2f} | "
              f"{r['peft_steps_per_s']:.2f} | {r['bare_steps_per_s']:.2f} | {r['ratio_to_bare']:.2f} | "
              f"{r['peft_ratio_to_bare']:.2f} | {r['steps_per_s'] / r['peft_steps_per_s']:.2f} | "
              f"{r['time_to_first_step_s']:.1f} s |")
    print(f"\nentrypoint end to end (tiny SD1.5, sample dataset, {e2e['steps']} steps, 64 px): {e2e['wall_s']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "entrypoint": e2e}, indent=2))


if __name__ == "__main__":
    main()
