"""The actions on an existing job: stop, resume, delete its record, pull its LoRA (the tab's buttons, the CLI's
`stop`/`resume`/`rm`/`pull` and the REST routes all call these, through cloudlora.jobs.service, whose face they are)."""
from __future__ import annotations

import json
import struct
import time
from pathlib import Path

from ..errors import UserError
from ..settings import data_dir, Settings
from .local_backend import local
from .results import outputs
from . import records, status as status_mod
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
    if rec.spec.backend == "local":
        message = local.stop(Path(rec.local_dir))
    else:
        from .sagemaker_backend import sagemaker

        message = sagemaker.stop(settings, rec.sagemaker_name or rec.id)
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
        if rec.spec.backend == "local":
            jobdir = Path(rec.local_dir)

            def inputs() -> None:
                from .continue_from import staged_local

                model = model_or_empty(store, rec.spec.model)
                local.prepare(jobdir, store, model_key=rec.model_file, dataset_name=rec.spec.dataset,
                              config_text=rec.spec.config,
                              hyperparameters=hyperparameters(rec.spec, rec.id, model, staged_local(jobdir)),
                              part_keys=part_keys(model))

            if rec.started:  # the runs so far, so that elapsed goes on after the resume (status.summary)
                rec.earlier_training_s += round(max(0.0, (rec.ended or time.time()) - rec.started))
            message = local.resume(jobdir, settings, prepare_inputs=inputs)
        else:
            from .sagemaker_backend import sagemaker

            from .continue_from import staged_s3

            attempt = rec.resumes + 1
            model = model_or_empty(store, rec.spec.model)
            network = staged_s3(store, rec.id)  # the LoRA it continues from, if any: the same channel again
            name = sagemaker.resume(settings, rec.spec, attempt=attempt, model_key=rec.model_file, store=store,
                                    part_keys=part_keys(model), network_key=network,
                                    hyperparameters=hyperparameters(rec.spec, rec.id, model,
                                                                     network.rsplit("/", 1)[-1] if network else ""))
            rec.earlier_billable_s += rec.billable_s
            rec.earlier_training_s += rec.training_s
            rec.billable_s = rec.training_s = 0
            rec.sagemaker_name = name
            prefix = sagemaker.checkpoint_prefix(rec.id)
            has_checkpoint = any(True for _ in store.list(prefix))
            message = (f"resumed as SageMaker job {name}: it continues from the checkpoint in "
                       f"{store.uri(prefix)}" if has_checkpoint
                       else f"resumed as SageMaker job {name}: no checkpoint was saved, so it starts from step 0")
            status_mod.log_cache.pop(rec.id, None)
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
    if rec.spec.backend == "local":
        local.delete(Path(rec.local_dir))
    import shutil

    shutil.rmtree(data_dir() / "jobs" / job_id, ignore_errors=True)
    status_mod.log_cache.pop(job_id, None)
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
            return {"file": rec.pulled[-1].get("file", ""), "message": "already pulled", "renamed": False}
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
        records.save(store, rec)
        return result.as_dict()
