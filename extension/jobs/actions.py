"""The actions on an existing job: stop, resume, delete its record, pull its LoRA (the tab's buttons, the CLI's
`stop`/`resume`/`rm`/`pull` and the REST routes all call these, through cloudlora.jobs.service, whose face they are)."""
from __future__ import annotations

import json
import struct
import time
from pathlib import Path

from ..errors import UserError
from ..settings import data_dir, Settings
from .results import outputs
from . import backends, job_captions, records
from .job_store import (final_pulled, get_record, hyperparameters, model_or_empty, open_job_store, part_keys,
                        resolve_settings)
from .records import TERMINAL, JobRecord
from .status import refresh, resumable, summary


def stop_job(job_id: str, settings: Settings | None = None) -> dict:
    settings = resolve_settings(settings)
    store = open_job_store(settings)
    rec = refresh(get_record(store, job_id), settings, store)
    if rec.status in TERMINAL:
        return {**summary(rec), "message": f"The job is already {rec.status}."}
    message = backends.of(rec.spec.backend).stop(rec, settings)
    rec = refresh(rec, settings, store)
    return {**summary(rec), "message": message}


def resume_job(job_id: str, settings: Settings | None = None) -> dict:
    """Starts a Stopped or Failed job again from its last checkpoint (the tab's Resume, `cloudlora resume`, REST).

    It continues at the step after the checkpoint and ends with the same LoRA as an uninterrupted run. Locally the
    runner starts again in the job's folder; on SageMaker a new job <id>-r<N> starts from the old checkpoint prefix.
    """
    settings = resolve_settings(settings)
    store = open_job_store(settings)
    with records.lock(f"resume-{records.check_job_id(job_id)}"):  # a double click resumes once
        rec = refresh(get_record(store, job_id), settings, store)
        if rec.status not in ("Stopped", "Failed"):
            raise UserError(f"The job '{job_id}' is {rec.status}: only a Stopped or Failed job can be resumed.",
                            "Wait for it to end (or stop it); a Completed job's LoRA is pulled, not resumed.")
        if not resumable(rec):
            raise UserError(f"The job '{job_id}' cannot be resumed"
                            + (": the SageMaker Kohya sample container does not read checkpoints."
                               if rec.spec.container == "kohya-sample" else f": its folder {rec.local_dir} is gone."),
                            "Create the job again.")
        def inputs(network_weights: str) -> backends.Inputs:  # asked only when the backend lays the inputs out
            model = model_or_empty(store, rec.spec.model)
            return backends.Inputs(model_key=rec.model_file, dataset=rec.spec.dataset, config=rec.spec.config,
                                   hyperparameters=hyperparameters(rec.spec, rec.id, model, network_weights),
                                   part_keys=part_keys(model), captioner=job_captions.wanted(rec.spec.config))

        message = backends.of(rec.spec.backend).resume(rec, settings, store, inputs)
        rec.resumes += 1
        rec.status, rec.secondary_status, rec.failure, rec.ended = "Starting", "Resuming", "", 0.0
        records.save(store, rec)
        rec = refresh(rec, settings, store)
        return {**summary(rec), "message": message}


def delete_record(job_id: str, settings: Settings | None = None) -> dict:
    """Deletes the job's record and its files in the store (not a LoRA already pulled into models/Lora)."""
    settings = resolve_settings(settings)
    store = open_job_store(settings)
    rec = refresh(get_record(store, job_id), settings, store)
    if rec.status not in TERMINAL:
        raise UserError(f"The job '{job_id}' is still {rec.status}.", "Stop it first, then delete its record.")
    n = records.delete(store, job_id)
    _forget_token(store, rec)
    backends.of(rec.spec.backend).delete(rec)
    import shutil

    shutil.rmtree(data_dir() / "jobs" / job_id, ignore_errors=True)
    return {"id": job_id, "deleted": True, "objects": n}


def _forget_token(store, rec: JobRecord) -> None:
    """Drops the token index entry of a deleted job (only if it still names that job)."""
    if not rec.spec.client_token:
        return
    key = records.token_key(rec.spec.client_token)
    try:
        entry = json.loads(store.get_bytes(key))
    except (FileNotFoundError, ValueError):
        return
    if isinstance(entry, dict) and entry.get("job_id") == rec.id:
        store.delete(key)


def job_outputs(job_id: str, settings: Settings | None = None) -> list[str]:
    settings = resolve_settings(settings)
    rec = get_record(open_job_store(settings), job_id)
    return [str(p) for p in outputs.lora_outputs(rec)]


def pull_job(job_id: str, settings: Settings | None = None, *, lora_dir: str | Path | None = None,
             file: str | None = None, unless_pulled: bool = False, as_lora: bool = False) -> dict:
    """The job's LoRA (or one intermediate file, by name) into the Lora folder with sidecar and preview.

    as_lora: the intermediate `file` (e.g. the epoch the grid or the validation loss picked) becomes the job's LoRA
    under its name. unless_pulled (auto-pull): do nothing when the job was pulled meanwhile (two refreshes racing)."""
    settings = resolve_settings(settings)
    store = open_job_store(settings)
    with records.lock(f"pull-{job_id}"):
        rec = refresh(get_record(store, job_id), settings, store)
        if unless_pulled and final_pulled(rec):
            return _bring_captions(rec, settings, store, {"file": rec.pulled[-1].get("file", ""),
                                                          "message": "already pulled", "renamed": False})
        if rec.status != "Completed" and not file:
            raise UserError(f"The job '{job_id}' is {rec.status}, not Completed: there is no final LoRA to pull.",
                            "Wait for it to complete; intermediate epoch files can be pulled by name (--file).")
        if as_lora and not file:
            raise UserError("Pulling an epoch as the LoRA needs the epoch's file name.",
                            "Name it, e.g. --file NAME-000002.safetensors --as-lora.")
        result, final = outputs.pull_files(rec, settings, lora_dir=lora_dir, file=file, as_lora=as_lora)
        rec = records.load(store, job_id) or rec
        from ..library.pull import data_digest

        entry = {"file": result.file, "renamed": result.renamed, "at": time.time(), "final": final}
        if final:
            try:
                entry["digest"] = data_digest(Path(result.file))  # recognises our own untouched copy later
            except (OSError, ValueError, struct.error):
                pass
        rec.pulled = [p for p in rec.pulled if p.get("file") != result.file] + [entry]
        records.save_keeping_pulls(store, rec)
        return _bring_captions(rec, settings, store, result.as_dict()) if final else result.as_dict()


def _bring_captions(rec: JobRecord, settings: Settings, store, out: dict) -> dict:
    """A captioning job's captions become the dataset's new version, once; a failure is said and tried again at the
    next pull (the LoRA is pulled either way)."""
    if rec.captions_applied or rec.status != "Completed" or not job_captions.wanted(rec.spec.config):
        return out
    try:
        applied = job_captions.apply(rec, outputs.model_dir(rec, settings), settings, store)
    except UserError as err:
        return {**out, "message": f"{out['message']} The job's captions were not brought into the dataset yet: "
                                  f"{err.message} {err.fix or ''}".strip()}
    if applied is None:
        return out
    rec.captions_applied = applied["version"] or "yes"
    records.save_keeping_pulls(store, rec)
    return {**out, "captions": applied, "message": f"{out['message']} {job_captions.summary_text(applied)}"}
