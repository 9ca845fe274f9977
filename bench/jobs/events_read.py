"""Benchmark: reading a job's loss curve from TensorBoard event files, ours (no TensorBoard) vs TensorBoard's own
EventAccumulator, in the same run. Run with the trainer's env (it has tensorboard and torch's SummaryWriter):

    .venv/trainer/bin/python bench/jobs/events_read.py --steps 20000 --rounds 5

Writes bench/jobs/results.json. Both readers return the same points (checked).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from cloudlora.jobs.results import events


def write_events(folder: Path, steps: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(folder))
    for i in range(steps):  # what the trainer logs per step: two losses and two learning rates
        w.add_scalar("loss/current", 1.0 / (i + 1), i)
        w.add_scalar("loss/average", 0.5 / (i + 1), i)
        w.add_scalar("lr/unet", 1e-4, i)
        w.add_scalar("lr/textencoder", 5e-5, i)
    w.close()


def ours(folder: Path) -> list[tuple[str, int, float]]:
    events._cache.clear()  # a cold read: the whole file, as on the first view of a job
    return [(p["tag"], p["step"], p["loss"]) for p in events.loss_points(folder)]


def ours_refresh(folder: Path) -> list[tuple[str, int, float]]:
    """A refresh of an open job view: the file was read before; only new records would be parsed."""
    return [(p["tag"], p["step"], p["loss"]) for p in events.loss_points(folder)]


def tensorboard(folder: Path) -> list[tuple[str, int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    out = []
    for tag in ("loss/average", "loss/current"):
        out += [(tag, e.step, e.value) for e in acc.Scalars(tag)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_events(folder, args.steps)
        size = sum(p.stat().st_size for p in folder.iterdir())
        a, b = ours(folder), tensorboard(folder)
        assert [(t, s) for t, s, _ in a] == [(t, s) for t, s, _ in b]
        assert all(abs(x[2] - y[2]) < 1e-6 for x, y in zip(a, b)), "the readers disagree"
        times = {"ours": [], "ours_refresh": [], "tensorboard": []}
        for _ in range(args.rounds):  # interleaved, so load changes hit both alike
            for name, fn in (("ours", ours), ("ours_refresh", ours_refresh), ("tensorboard", tensorboard)):
                t0 = time.perf_counter()
                fn(folder)
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {"steps": args.steps, "scalars": args.steps * 4, "file_bytes": size, "points": len(a),
              "seconds": times, "median_s": med, "speedup_vs_tensorboard": med["tensorboard"] / med["ours"],
              "refresh_speedup_vs_tensorboard": med["tensorboard"] / med["ours_refresh"]}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
