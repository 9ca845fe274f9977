"""A job's status: asking its backend (and saving the record when it changed), and the summary every listing shows."""
from __future__ import annotations

import time
from collections import deque
from pathlib import Path

from ..settings import Settings
from .local_backend import local
from . import records
from .results.estimate import format_duration
from .records import TERMINAL, JobRecord

log_cache: dict[str, tuple[dict, deque]] = {}  # SageMaker: job id -> (CloudWatch tokens, last lines)


def refresh(rec: JobRecord, settings: Settings, store, *, with_logs: bool = False) -> JobRecord:
    """Asks the backend for the current status and saves the record when it changed."""
    # SageMaker's end states are final; a local job's files are cheap to read and always the truth.
    if rec.spec.backend == "sagemaker" and rec.status in TERMINAL and rec.updated and \
            (rec.pulled or not rec.auto_pull or rec.status != "Completed"):
        return rec
    before = (rec.status, rec.secondary_status, rec.step, rec.total_steps, rec.failure, rec.billable_s)
    if rec.spec.backend == "local":
        st = local.status(Path(rec.local_dir))
        rec.status, rec.secondary_status = st["status"], st["secondary_status"]
        if st["total_steps"]:
            rec.step, rec.total_steps = st["step"], st["total_steps"]
        rec.started, rec.ended, rec.failure = st["started"] or rec.started, st["ended"], st["failure"]
        if rec.status == "Completed" and before[0] != "Completed":  # this machine's speed, for the next estimate
            from .results import calibration

            calibration.record_local_job(rec)
    else:
        from .sagemaker_backend import sagemaker

        st = sagemaker.status_from(sagemaker.describe(settings, rec.sagemaker_name or rec.id))
        rec.status, rec.secondary_status = st["status"], st["secondary_status"]
        rec.started, rec.ended = st["started"], st["ended"]
        rec.billable_s, rec.training_s = st["billable_s"], st["training_s"]
        rec.failure, rec.output_uri = st["failure"], st["output_uri"]
        if with_logs:
            sagemaker_log_lines(rec, settings)
    if (rec.status, rec.secondary_status, rec.step, rec.total_steps, rec.failure, rec.billable_s) != before:
        records.save(store, rec)
    return rec


def sagemaker_log_lines(rec: JobRecord, settings: Settings) -> list[str]:
    from .sagemaker_backend import sagemaker

    tokens, lines = log_cache.get(rec.id, ({}, deque(maxlen=2000)))
    new, tokens = sagemaker.log_events(settings, rec.sagemaker_name or rec.id, tokens)
    lines.extend(new)
    log_cache[rec.id] = (tokens, lines)
    step, total, _ = local.last_step("\n".join(lines))
    if total:
        rec.step, rec.total_steps = step, total
    return list(lines)


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
        "cost_usd": 0.0 if spec.backend == "local" else None, "spot_savings": None,
    }
    if spec.backend == "sagemaker":
        from .sagemaker_backend import sagemaker

        c = sagemaker.cost(spec.instance_type, rec.billable_s + rec.earlier_billable_s,
                           rec.training_s + rec.earlier_training_s, spec.spot)
        out["cost_usd"], out["spot_savings"] = c["cost_usd"], c["spot_savings"]
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
