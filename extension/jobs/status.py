"""A job's status: asking its backend (and saving the record when it changed), and the summary every listing shows."""
from __future__ import annotations

import time
from pathlib import Path

from ..settings import Settings
from . import backends, records
from .results.estimate import format_duration
from .records import TERMINAL, JobRecord


def refresh(rec: JobRecord, settings: Settings, store, *, with_logs: bool = False) -> JobRecord:
    """Asks the job's backend for the current status and saves the record when it changed."""
    before = (rec.status, rec.secondary_status, rec.step, rec.total_steps, rec.failure, rec.billable_s)
    backends.of(rec.spec.backend).refresh(rec, settings, with_logs=with_logs)
    if (rec.status, rec.secondary_status, rec.step, rec.total_steps, rec.failure, rec.billable_s) != before:
        records.save_keeping_pulls(store, rec)  # rec may have been read before another request pulled the job
    return rec


def summary(rec: JobRecord) -> dict:
    spec = rec.spec
    end = rec.ended or (time.time() if rec.started and rec.status not in TERMINAL else 0)
    elapsed = max(0.0, end - rec.started) if rec.started else 0.0
    if spec.backend == "local":  # a resumed job's time goes on from the runs before (actions.resume_job)
        elapsed += rec.earlier_training_s
    out = {
        "id": rec.id, "lora_name": spec.lora_name, "model": spec.model, "dataset": spec.dataset,
        "family": spec.family, "backend": spec.backend, "instance_type": spec.instance_type,
        "spot": spec.spot if spec.backend == "sagemaker" else False, "container": spec.container,
        "status": rec.status, "secondary_status": rec.secondary_status,
        "step": rec.step, "total_steps": rec.total_steps,
        "elapsed_s": round(elapsed), "elapsed": format_duration(elapsed) if elapsed else "",
        "created": spec.created, "triggers": rec.triggers,
        "pulled": [p.get("file") for p in rec.pulled],
    }
    out["cost_usd"], out["spot_savings"] = backends.of(spec.backend).cost(rec)
    out["cost"] = cost_text(out)
    out["resumable"] = resumable(rec)
    out["resumes"] = rec.resumes
    return out


def resumable(rec: JobRecord) -> bool:
    """A Stopped or Failed job whose backend can start it again from its checkpoint."""
    if rec.status not in ("Stopped", "Failed") or rec.spec.container == "kohya-sample":
        return False
    return rec.spec.backend == "sagemaker" or bool(rec.local_dir and Path(rec.local_dir).is_dir())


def cost_text(job: dict) -> str:
    """The cost as the list shows it: '-' for local jobs, '' until SageMaker reports billable time."""
    if job["backend"] == "local":
        return "-"
    if job.get("cost_usd") is None:
        return ""
    text = f"${job['cost_usd']:.2f}"
    if job.get("spot_savings") is not None:
        text += f" (spot −{job['spot_savings'] * 100:.0f}%)"
    return text
