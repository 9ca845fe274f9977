"""The trainer's closing `phases={...}` log line (cloud_backend/trainer/loop/phases.py) read back for the Train tab, the
CLI and REST: where a finished job's time went and its peak GPU and host memory per phase."""
from __future__ import annotations

import json

PREFIX = "phases="


def with_setup(rec: dict | None, setup_seconds: float | None) -> dict | None:
    """The record with the trainer environment's setup (the local runner's runner/setup.json) as its first phase."""
    if not rec or not setup_seconds:
        return rec
    rec = dict(rec, seconds={"setup (trainer environment)": float(setup_seconds), **rec["seconds"]})
    if rec.get("total_s") is not None:
        rec["total_s"] = float(rec["total_s"]) + float(setup_seconds)
    return rec


def parse(log_text: str) -> dict | None:
    """The last phases record in a log, or None when the log has none (a running or older job)."""
    for line in reversed(log_text.splitlines()):
        line = line.strip()
        if line.startswith(PREFIX):
            try:
                rec = json.loads(line[len(PREFIX):])
            except ValueError:
                return None
            return rec if isinstance(rec, dict) and isinstance(rec.get("seconds"), dict) else None
    return None


def table(rec: dict) -> list[list[str]]:
    """Rows [phase, time, share, peak GPU, peak host] for each phase, then the total."""
    seconds = rec["seconds"]
    total = float(rec.get("total_s") or sum(seconds.values()) or 1e-9)
    gpu, rss = rec.get("peak_gpu_gib") or {}, rec.get("peak_rss_gib") or {}
    rows = []
    for name, secs in seconds.items():
        label = name
        count = (rec.get("count") or {}).get(name, 1)
        if name == "steps" and rec.get("steps"):
            label = f"steps ({rec['steps']}, {rec['steps'] / max(secs, 1e-9):.2f} it/s)"
        elif count > 1:
            label = f"{name} ({count}x)"
        rows.append([label, f"{secs:.1f} s", f"{100 * secs / total:.0f} %",
                     f"{gpu[name]:.2f} GiB" if name in gpu else "-", f"{rss[name]:.2f} GiB" if name in rss else "-"])
    rows.append(["total", f"{total:.1f} s", "", f"{max(gpu.values()):.2f} GiB" if gpu else "-",
                 f"{max(rss.values()):.2f} GiB" if rss else "-"])
    return rows


def markdown(rec: dict | None) -> str:
    """The table as Markdown (empty for None), with the time to the first step and the GPU's name."""
    if not rec:
        return ""
    lines = ["| phase | time | share | peak GPU memory | peak host memory |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in table(rec)]
    facts = []
    if rec.get("first_step_s") is not None:
        facts.append(f"first step after {rec['first_step_s']:.1f} s")
    facts.append(f"on {rec['gpu']}" if rec.get("gpu") else "no GPU (trained on the CPU)")
    return "\n".join(lines) + "\n\n" + ", ".join(facts) + "."
