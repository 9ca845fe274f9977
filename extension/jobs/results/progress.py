"""A job's progress as people read it: its state said once, step x/y, speed, time left and the cost so far.

Built from a job summary (service.summary / get_job) and the trainer's step lines (`step=5/20 loss=… it/s=1.93`),
which local jobs and SageMaker's CloudWatch logs both carry. One function for the tab, the CLI and REST.
"""
from __future__ import annotations

import re

from ..sagemaker_backend import instances
from .estimate import format_duration

_RATE_RE = re.compile(r"step=(\d+)/(\d+)\b.*?\bit/s=([0-9.]+)")
TERMINAL = ("Completed", "Failed", "Stopped")


def state_text(job: dict) -> str:
    """'Training', 'Queued (behind cl-x)', 'Failed · Orphaned': the status and its detail, without repeating the
    step count that the progress says (a secondary status "step 5/20" is the same fact twice)."""
    status, detail = job.get("status", ""), (job.get("secondary_status") or "").strip()
    if not detail or detail.lower().startswith("step ") or detail == status or status == "Completed":
        return status
    return f"{status} · {detail}"


def rate(log_lines: list[str]) -> float | None:
    """The trainer's own steps per second, from the last step line that carries it."""
    for line in reversed(log_lines or []):
        m = _RATE_RE.search(line)
        if m:
            try:
                value = float(m.group(3))
            except ValueError:
                return None
            return value if value > 0 else None
    return None


def cost_so_far(job: dict) -> str:
    """Local: no cloud cost. SageMaker: the billed cost once known, else the running time at the list price."""
    if job.get("backend") == "local":
        return "no cloud cost (this machine)"
    if job.get("cost"):
        return job["cost"]
    inst = instances.get(job.get("instance_type", ""))
    if inst is None or not job.get("elapsed_s"):
        return ""
    return f"~${job['elapsed_s'] / 3600 * inst.price_per_hour:.2f} so far (list price)"


def progress(job: dict, log_lines: list[str] | None = None) -> dict:
    """{"state", "step", "total", "fraction", "it_per_s", "eta_s", "eta", "cost", "text"}; text is one line."""
    step, total = int(job.get("step") or 0), int(job.get("total_steps") or 0)
    running = job.get("status") not in TERMINAL
    it_s = rate(log_lines or []) if running and total else None
    eta_s = (total - step) / it_s if it_s and total > step else None
    done = job.get("status") == "Completed"
    fraction = 1.0 if done else (step / total if total else 0.0)
    parts = [f"step {step}/{total}"] if total else []
    if it_s:
        parts.append(f"{it_s:.2f} it/s" if it_s < 10 else f"{it_s:.0f} it/s")
    if eta_s is not None:
        parts.append(f"about {format_duration(eta_s)} left")
    if job.get("elapsed"):
        parts.append(f"{'took' if not running else 'elapsed'} {job['elapsed']}")
    cost = cost_so_far(job)
    if cost:
        parts.append(cost if job.get("backend") == "local" else f"cost {cost}")
    return {"state": state_text(job), "step": step, "total": total, "fraction": round(fraction, 4),
            "it_per_s": it_s, "eta_s": round(eta_s) if eta_s is not None else None,
            "eta": format_duration(eta_s) if eta_s is not None else "", "cost": cost, "text": " · ".join(parts)}
