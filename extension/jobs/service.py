"""The one set of job actions that the tab, the CLI and the REST routes call.

create_job, list_jobs, get_job (here), stop_job, resume_job, delete_record, pull_job, job_outputs (actions.py),
follow_logs, wait (follow.py), estimate_job, default_config; all reached as cloudlora.jobs.service.<name>. Each takes plain values and returns plain dicts, so every caller shows the same thing.
Status always comes from the backend (local files or SageMaker) and is cached in the job record for listing;
a refresh that sees a Completed job that was not pulled yet pulls it (auto-pull).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

from .. import settings as settings_mod
from ..errors import UserError
from ..settings import Settings
from ..store.base import AlreadyExists
from . import estimate as estimate_mod
from . import best_epoch, events, failures, local, local_status, outputs, phases, progress, records
from .records import TERMINAL, JobRecord
from .spec import JobSpec, normalise, validate

log = logging.getLogger(__name__)
_create_lock = threading.Lock()
_log_cache: dict[str, tuple[dict, deque]] = {}  # SageMaker: job id -> (CloudWatch tokens, last lines)


def _settings(settings: Settings | None) -> Settings:
    return settings or settings_mod.resolve()


def _store(settings: Settings):
    from ..store import open_store

    return open_store(settings)


def _get_record(store, job_id: str) -> JobRecord:
    rec = records.load(store, job_id)
    if rec is None:
        raise UserError(f"No training job '{job_id}' in the store ({store.uri('jobs')}).",
                        "List the jobs with `cloudlora jobs` (or refresh the Trainings List).")
    return rec


def default_config(family: str) -> str:
    from cloudlora_backend.trainer.config.train_config import default_toml

    return default_toml(family)


# --- create -------------------------------------------------------------------------------------------------------

def create_job(spec: JobSpec | dict, settings: Settings | None = None, *,
               progress: Callable[[str], None] | None = None) -> dict:
    """Validates and submits a job. The client token alone identifies the request: the same token returns the same
    job (created=False); the same token with other settings raises records.TokenReused."""
    settings = _settings(settings)
    spec = JobSpec.from_dict(spec) if isinstance(spec, dict) else spec
    spec = normalise(spec, settings)
    store = _store(settings)
    say = progress or (lambda s: None)
    asked = records.request_fields(spec)
    token_key = records.token_key(spec.client_token)
    with _create_lock, records.lock(f"create-{token_key.rsplit('/', 1)[-1]}"):
        existing = _job_of_token(store, spec, asked)
        if existing is not None:
            return {**summary(existing), "created": False, "warnings": []}
        job_id = records.job_id_for(spec.lora_name or "lora", spec.client_token)
        entry = json.dumps({"job_id": job_id, "request": asked, "created": time.time()}).encode()
        try:  # create-only: of two machines sending one token at once, one creates the job
            store.put_bytes(token_key, entry, if_absent=True)
        except AlreadyExists:
            existing = _job_of_token(store, spec, asked)
            if existing is not None:
                return {**summary(existing), "created": False, "warnings": []}
            raise UserError("The job of this client token is being created right now.",
                            "Ask again in a moment: the same token then finds it.") from None
        try:
            return _submit(spec, settings, store, job_id, say)
        except BaseException:
            store.delete(token_key)  # nothing was created: the token may be used again (e.g. after a fix)
            raise


def _job_of_token(store, spec: JobSpec, asked: dict) -> JobRecord | None:
    """The job this client token made, if any; TokenReused when it was made with other settings."""
    key = records.token_key(spec.client_token)
    try:
        entry = json.loads(store.get_bytes(key))
    except FileNotFoundError:
        entry = None
    except ValueError:
        entry = {}
    if entry is None:  # a job made before the token index existed: its id came from the token (and the name)
        rec = records.load(store, records.job_id_for(spec.lora_name or "lora", spec.client_token))
        if rec is None or rec.spec.client_token != spec.client_token:
            return None
        old = records.request_fields(rec.spec)
    else:
        rec = records.load(store, str(entry.get("job_id") or "")) if isinstance(entry, dict) and \
            entry.get("job_id") else None
        if rec is None:
            created = entry.get("created") if isinstance(entry, dict) else None
            if isinstance(created, (int, float)) and time.time() - created < 600:
                raise UserError("The job of this client token is being created right now.",
                                "Ask again in a moment: the same token then finds it.")
            store.delete(key)  # its job was deleted, or its creation died long ago
            return None
        old = entry.get("request") or records.request_fields(rec.spec)
    if old != asked:
        raise records.TokenReused(rec.id, records.differences(old, asked))
    return rec


def _submit(spec: JobSpec, settings: Settings, store, job_id: str, say: Callable[[str], None]) -> dict:
    from . import continue_from

    say("Checking the model, dataset and config")
    checked = validate(spec, settings, store)
    weights = continue_from.resolve(spec.continue_from, settings, spec.family) if spec.continue_from else None
    model, dataset = checked["model"], checked["dataset"]
    spec.job_id = job_id
    spec.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    est = estimate_mod.estimate(spec.config, family=spec.family, images_per_epoch=_images_per_epoch(dataset),
                                instance_type=spec.instance_type, backend=spec.backend, spot=spec.spot,
                                **_local_device(spec.backend))
    model_key = str(model.get("file") or "")
    if not model_key.startswith("models/"):
        model_key = f"models/{spec.model}/{model_key}" if model_key else ""
    if not model_key:
        raise UserError(f"The manifest of model '{spec.model}' names no checkpoint file.",
                        f"Upload the model again (`cloudlora model upload PATH --name {spec.model}`).")
    part_keys = _part_keys(model)
    rec = JobRecord(spec=spec, status="Created", total_steps=est.steps, model_file=model_key,
                    triggers=list(dataset.get("triggers") or []),
                    images_per_epoch=_images_per_epoch(dataset))
    hyperparameters = _hyperparameters(spec, job_id, model, weights.name if weights is not None else "")
    if spec.backend == "local":
        jobdir = local.job_dir(store, job_id)
        rec.local_dir = str(jobdir)
        records.save(store, rec)
        say("Preparing the job folder")
        try:
            local.prepare(jobdir, store, model_key=model_key, dataset_name=spec.dataset, config_text=spec.config,
                          hyperparameters=hyperparameters, part_keys=part_keys)
            if weights is not None:
                continue_from.stage_local(jobdir, weights)
            local.start(jobdir, settings)
        except BaseException:
            records.delete(store, job_id)
            local.delete(jobdir)
            raise
        rec.status = "Starting"
    else:
        from . import sagemaker

        rec.sagemaker_name = job_id
        records.save(store, rec)  # first: a job SageMaker runs always has its record
        say("Submitting to SageMaker")
        try:
            network = continue_from.stage_s3(store, job_id, weights) if weights is not None else ""
            sagemaker.create(settings, spec, model_key=model_key, dataset_name=spec.dataset, store=store,
                             part_keys=part_keys, hyperparameters=hyperparameters, network_key=network)
        except BaseException:
            records.delete(store, job_id)  # refused: nothing was started, so nothing is kept
            raise
        rec.status = "Starting"
    records.save(store, rec)
    say(f"Created {job_id}")
    return {**summary(rec), "created": True, "warnings": checked["warnings"], "estimate": est.as_dict()}


def _hyperparameters(spec: JobSpec, job_id: str, model: dict, network_weights: str = "") -> dict[str, str]:
    """The trainer's string hyperparameters of a job (the same for its first run and every resume)."""
    hp = {"output_name": spec.lora_name, "family": spec.family, "config": "config.toml", "job_id": job_id}
    if model.get("sha256"):
        hp["model_sha256"] = str(model["sha256"])  # the trainer need not hash a 7 GB checkpoint again
    if network_weights:
        hp["network_weights"] = network_weights  # continue training: the file in the job's network channel
    return hp


def _part_keys(model: dict) -> dict[str, str]:
    """FLUX.1's separate clip_l / t5xxl / ae files of a model manifest, by part."""
    return {p: v["file"] for p, v in (model.get("parts") or {}).items()}


def _model_or_empty(store, name: str) -> dict:
    from .spec import read_manifest

    try:
        return read_manifest(store, "models", name)
    except UserError:
        return {}


def _images_per_epoch(dataset: dict) -> int:
    n = dataset.get("images_per_epoch")
    if n:
        return int(n)
    return int(dataset.get("images") or dataset.get("file_count") or 1)


def estimate_job(*, config: str, family: str, dataset: str, instance_type: str, backend: str, spot: bool,
                 settings: Settings | None = None) -> dict:
    settings = _settings(settings)
    ipe = 1
    if dataset:
        try:
            from .spec import read_manifest

            ipe = _images_per_epoch(read_manifest(_store(settings), "datasets", dataset))
        except UserError:
            pass
    est = estimate_mod.estimate(config, family=family or "sd15", images_per_epoch=ipe, instance_type=instance_type,
                                backend=backend, spot=spot, **_local_device(backend))
    return {**est.as_dict(), "summary": est.summary()}


def _local_device(backend: str) -> dict:
    """What the estimate needs to know about this machine when it trains here (the GPU's name, "" for the CPU)."""
    if backend != "local":
        return {}
    from . import local_gpu

    return {"local_gpu": local_gpu.describe(), "cpu_cores": local_gpu.cpu_cores()}


# --- status ---------------------------------------------------------------------------------------------------------

def _refresh(rec: JobRecord, settings: Settings, store, *, with_logs: bool = False) -> JobRecord:
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
            from . import calibration

            calibration.record_local_job(rec)
    else:
        from . import sagemaker

        st = sagemaker.status_from(sagemaker.describe(settings, rec.sagemaker_name or rec.id))
        rec.status, rec.secondary_status = st["status"], st["secondary_status"]
        rec.started, rec.ended = st["started"], st["ended"]
        rec.billable_s, rec.training_s = st["billable_s"], st["training_s"]
        rec.failure, rec.output_uri = st["failure"], st["output_uri"]
        if with_logs:
            _sagemaker_log_lines(rec, settings)
    if (rec.status, rec.secondary_status, rec.step, rec.total_steps, rec.failure, rec.billable_s) != before:
        records.save(store, rec)
    return rec


def _sagemaker_log_lines(rec: JobRecord, settings: Settings) -> list[str]:
    from . import sagemaker

    tokens, lines = _log_cache.get(rec.id, ({}, deque(maxlen=2000)))
    new, tokens = sagemaker.log_events(settings, rec.sagemaker_name or rec.id, tokens)
    lines.extend(new)
    _log_cache[rec.id] = (tokens, lines)
    step, total, _ = local.last_step("\n".join(lines))
    if total:
        rec.step, rec.total_steps = step, total
    return list(lines)


def _final_pulled(rec: JobRecord) -> bool:
    return any(p.get("final", True) for p in rec.pulled)


def _auto_pull(rec: JobRecord, settings: Settings, store) -> None:
    if rec.status == "Completed" and rec.auto_pull and not _final_pulled(rec):
        try:
            pull_job(rec.id, settings=settings, unless_pulled=True)
        except Exception as err:  # listing must go on; the job view shows the reason
            log.warning("cloudlora: auto-pull of %s failed: %s", rec.id, err)


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
        "elapsed_s": round(elapsed), "elapsed": estimate_mod.format_duration(elapsed) if elapsed else "",
        "created": spec.created, "triggers": rec.triggers,
        "pulled": [p.get("file") for p in rec.pulled],
        "cost_usd": 0.0 if spec.backend == "local" else None, "spot_savings": None,
    }
    if spec.backend == "sagemaker":
        from . import sagemaker

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


def list_jobs(settings: Settings | None = None, *, refresh: bool = True, auto_pull: bool = True) -> list[dict]:
    settings = _settings(settings)
    store = _store(settings)
    out = []
    for rec in records.list_records(store):
        if refresh:
            try:
                rec = _refresh(rec, settings, store)
            except UserError as err:  # one unreachable job must not hide the others
                rec.secondary_status = f"status unavailable: {err.message}"
            if auto_pull:
                _auto_pull(rec, settings, store)
                rec = records.load(store, rec.id) or rec
        out.append(summary(rec))
    return out


def get_job(job_id: str, settings: Settings | None = None, *, log_lines: int = 200, auto_pull: bool = True) -> dict:
    """Everything about one job: status, step x/y, elapsed, cost, loss points, samples, log tail, failure."""
    settings = _settings(settings)
    store = _store(settings)
    rec = _refresh(_get_record(store, job_id), settings, store, with_logs=True)
    if auto_pull:
        _auto_pull(rec, settings, store)
        rec = records.load(store, job_id) or rec
    out = summary(rec)
    if rec.spec.backend == "local":
        jobdir = Path(rec.local_dir)
        tail_text = local.read_tail(local.log_path(jobdir))
        loss = events.loss_points(local.tensorboard_dir(jobdir))
        samples = [str(p) for p in local.samples(jobdir)]
    else:
        tail_text = "\n".join(_log_cache.get(rec.id, ({}, []))[1])
        loss = events.loss_points(outputs.sync_tensorboard(rec, settings, store))
        art = outputs.artifacts_dir(rec)
        samples = [str(p) for p in sorted(art.rglob("*.png"))] if art.exists() else []
    # Each sample's epoch, step, prompt and seed (the trainer's samples/index.json), ordered by step.
    samples_info = outputs.sample_info([Path(p) for p in samples])
    samples = [i["path"] for i in samples_info]
    tail = tail_text.splitlines()[-log_lines:]
    lora_files = outputs.lora_outputs(rec)
    out.update(log_tail=tail, loss_points=loss, samples=samples, samples_info=samples_info,
               sample_labels=[i["label"] for i in samples_info], failure=rec.failure,
               outputs=[str(p) for p in lora_files], explanation=None, config=rec.spec.config,
               best_epoch=best_epoch.of_job(rec, lora_files))
    out["progress"] = progress.progress(out, tail)
    # Where a finished run's time and memory went (None while running): this run's, not one from before a resume.
    out["phases"] = phases.parse(local_status._this_run(tail_text))
    if rec.spec.backend == "local":
        out["phases"] = phases.with_setup(out["phases"], _setup_seconds(Path(rec.local_dir)))
    if rec.status == "Failed":
        exp = failures.explain(rec.failure, "\n".join(tail[-60:]), instance_type=rec.spec.instance_type)
        out["explanation"] = exp.as_dict() if exp else None
    return out


def _setup_seconds(jobdir: Path) -> float | None:
    """How long this run's trainer environment setup took (runner/setup.json), None when it needed none."""
    try:
        return float(json.loads((jobdir / "runner" / "setup.json").read_text(encoding="utf-8"))["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def tensorboard_dir(job_id: str, settings: Settings | None = None) -> Path:
    settings = _settings(settings)
    store = _store(settings)
    rec = _get_record(store, job_id)
    if rec.spec.backend == "local":
        return local.tensorboard_dir(Path(rec.local_dir))
    return outputs.sync_tensorboard(rec, settings, store)


# The actions on existing jobs and following them live in their own modules; every caller reaches them here.
from .actions import delete_record, job_outputs, pull_job, resume_job, stop_job  # noqa: E402,F401
from .follow import follow_logs, wait  # noqa: E402,F401
