"""The one set of job actions that the tab, the CLI and the REST routes call.

create_job, list_jobs, get_job, wait (here), stop_job, resume_job, delete_record, pull_job, job_outputs
(actions.py), follow_logs (follow.py), estimate_job, default_config; all reached as cloudlora.jobs.service.<name>.
Below it: status.py (refresh from the backend, the summary) and job_store.py (the record and the shared values). Each takes plain values and returns plain dicts, so every caller shows the same thing.
Status always comes from the backend (local files or SageMaker) and is cached in the job record for listing;
a refresh that sees a Completed job that was not pulled yet pulls it (auto-pull).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..settings import Settings
from ..store.base import AlreadyExists
from .results import estimate as estimate_mod, best_epoch, events, failures, outputs, phases, progress
from . import backends, job_captions, status as status_mod, job_store, records
from .local_backend import local_status
from .actions import delete_record, job_outputs, pull_job, resume_job, stop_job  # noqa: F401  (the lifecycle's face)
from .follow import follow_logs  # noqa: F401  (the lifecycle's face)
from .job_store import final_pulled, get_record, model_or_empty, open_job_store, resolve_settings  # noqa: F401
from .records import JobRecord, TERMINAL
from .spec import JobSpec, normalise, validate
from .status import cost_text, resumable, summary  # noqa: F401  (the lifecycle's face)

log = logging.getLogger(__name__)
_create_lock = threading.Lock()


def default_config(family: str) -> str:
    from cloudlora_backend.trainer.config.train_config import default_toml

    return default_toml(family)


# --- create -------------------------------------------------------------------------------------------------------

def create_job(spec: JobSpec | dict, settings: Settings | None = None, *,
               progress: Callable[[str], None] | None = None) -> dict:
    """Validates and submits a job. The client token alone identifies the request: the same token returns the same
    job (created=False); the same token with other settings raises records.TokenReused."""
    settings = resolve_settings(settings)
    spec = JobSpec.from_dict(spec) if isinstance(spec, dict) else spec
    spec = normalise(spec, settings)
    store = open_job_store(settings)
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
                                **local_device(spec.backend))
    model_key = str(model.get("file") or "")
    if not model_key.startswith("models/"):
        model_key = f"models/{spec.model}/{model_key}" if model_key else ""
    if not model_key:
        raise UserError(f"The manifest of model '{spec.model}' names no checkpoint file.",
                        f"Upload the model again (`cloudlora model upload PATH --name {spec.model}`).")
    part_keys = job_store.part_keys(model)
    rec = JobRecord(spec=spec, status="Created", total_steps=est.steps, model_file=model_key,
                    triggers=list(dataset.get("triggers") or []),
                    images_per_epoch=_images_per_epoch(dataset))
    captioner = job_captions.wanted(spec.config)
    if captioner and spec.container == "kohya-sample":
        raise UserError(f'caption = "{captioner}" needs this project\'s trainer; the SageMaker Kohya sample container '
                        "does not caption.", "Pick the cloudlora container, or caption the dataset first "
                        "(`cloudlora dataset caption`).")
    inputs = backends.Inputs(model_key=model_key, dataset=spec.dataset, config=spec.config,
                             hyperparameters=job_store.hyperparameters(spec, job_id, model,
                                                                       weights.name if weights is not None else ""),
                             part_keys=part_keys, weights=weights, captioner=captioner)
    backend = backends.of(spec.backend)
    backend.place(rec, store)
    records.save(store, rec)  # first: a job the backend runs always has its record
    say("Preparing the job folder" if spec.backend == "local" else "Submitting to SageMaker")
    try:
        backend.submit(rec, inputs, settings, store, say)
    except BaseException:
        records.delete(store, job_id)  # refused or failed to start: nothing runs, so nothing is kept
        raise
    rec.status = "Starting"
    records.save(store, rec)
    say(f"Created {job_id}")
    return {**summary(rec), "created": True, "warnings": checked["warnings"], "estimate": est.as_dict()}


def _images_per_epoch(dataset: dict) -> int:
    n = dataset.get("images_per_epoch")
    if n:
        return int(n)
    return int(dataset.get("images") or dataset.get("file_count") or 1)


def estimate_job(*, config: str, family: str, dataset: str, instance_type: str, backend: str, spot: bool,
                 settings: Settings | None = None) -> dict:
    settings = resolve_settings(settings)
    ipe = 1
    if dataset:
        try:
            from .spec import read_manifest

            ipe = _images_per_epoch(read_manifest(open_job_store(settings), "datasets", dataset))
        except UserError:
            pass
    est = estimate_mod.estimate(config, family=family or "sd15", images_per_epoch=ipe, instance_type=instance_type,
                                backend=backend, spot=spot, **local_device(backend))
    return {**est.as_dict(), "summary": est.summary()}


def local_device(backend: str) -> dict:
    """What the estimate needs to know about this machine when it trains here (the GPU's name, "" for the CPU)."""
    if backend != "local":
        return {}
    from .local_backend import local_gpu

    return {"local_gpu": local_gpu.describe(), "cpu_cores": local_gpu.cpu_cores()}


# --- status ---------------------------------------------------------------------------------------------------------

def _auto_pull(rec: JobRecord, settings: Settings, store) -> None:
    if rec.status == "Completed" and rec.auto_pull and not final_pulled(rec):
        try:
            pull_job(rec.id, settings=settings, unless_pulled=True)
        except Exception as err:  # listing must go on; the job view shows the reason
            log.warning("cloudlora: auto-pull of %s failed: %s", rec.id, err)


def list_jobs(settings: Settings | None = None, *, refresh: bool = True, auto_pull: bool = True) -> list[dict]:
    settings = resolve_settings(settings)
    store = open_job_store(settings)
    out = []
    for rec in records.list_records(store):
        if refresh:
            try:
                rec = status_mod.refresh(rec, settings, store)
            except UserError as err:  # one unreachable job must not hide the others
                rec.secondary_status = f"status unavailable: {err.message}"
            if auto_pull:
                _auto_pull(rec, settings, store)
                rec = records.load(store, rec.id) or rec
        out.append(summary(rec))
    return out


def get_job(job_id: str, settings: Settings | None = None, *, log_lines: int = 200, auto_pull: bool = True) -> dict:
    """Everything about one job: status, step x/y, elapsed, cost, loss points, samples, log tail, failure."""
    settings = resolve_settings(settings)
    store = open_job_store(settings)
    rec = status_mod.refresh(get_record(store, job_id), settings, store, with_logs=True)
    if auto_pull:
        _auto_pull(rec, settings, store)
        rec = records.load(store, job_id) or rec
    out = summary(rec)
    live = backends.of(rec.spec.backend).live(rec, settings, store)
    tail_text = live.log_text
    loss = events.loss_points(live.tensorboard_dir)
    samples = [str(p) for p in live.samples]
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
    out["phases"] = phases.parse(local_status.this_run(tail_text))
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
    settings = resolve_settings(settings)
    store = open_job_store(settings)
    rec = get_record(store, job_id)
    return backends.of(rec.spec.backend).live(rec, settings, store).tensorboard_dir


def open_tensorboard(job_id: str, settings: Settings | None = None) -> str:
    """Starts (or reuses) a TensorBoard on the job's events, served by the trainer venv's TensorBoard; its URL."""
    from .local_backend import tensorboard_server, trainer_env

    settings = resolve_settings(settings)
    python, ready = trainer_env.resolve(settings)
    if not ready:
        raise UserError("The trainer environment (which has TensorBoard) is not set up yet.",
                        "It is created with the first local job; or set CLOUDLORA_TRAINER_PYTHON.")
    return tensorboard_server.start(job_id, tensorboard_dir(job_id, settings), python)


def wait(job_id: str, settings: Settings | None = None, *, on_update: Callable[[dict], None] | None = None,
         interval: float = 1.0) -> dict:
    """Polls until the job ends (auto-pulling when it completes); returns the last get_job()."""
    while True:
        info = get_job(job_id, settings, log_lines=20)
        if on_update:
            on_update(info)
        if info["status"] in TERMINAL:
            return info
        time.sleep(interval)
