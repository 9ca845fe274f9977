"""The job store's plain lookups and the values every run of a job shares: the settings and store to use, a job's
record, its model's manifest, the trainer's hyperparameters. Below the lifecycle modules (service, actions, follow)."""
from __future__ import annotations

from ..errors import UserError
from ..settings import Settings
from . import records
from .records import JobRecord
from .spec import JobSpec


def resolve_settings(settings: Settings | None) -> Settings:
    """The settings given, or the resolved ones."""
    from .. import settings as settings_mod

    return settings or settings_mod.resolve()


def open_job_store(settings: Settings):
    from ..store import open_store

    return open_store(settings)


def get_record(store, job_id: str) -> JobRecord:
    rec = records.load(store, job_id)
    if rec is None:
        raise UserError(f"No training job '{job_id}' in the store ({store.uri('jobs')}).",
                        "List the jobs with `cloudlora jobs` (or refresh the Trainings List).")
    return rec


def hyperparameters(spec: JobSpec, job_id: str, model: dict, network_weights: str = "") -> dict[str, str]:
    """The trainer's string hyperparameters of a job (the same for its first run and every resume)."""
    hp = {"output_name": spec.lora_name, "family": spec.family, "config": "config.toml", "job_id": job_id}
    if model.get("sha256"):
        hp["model_sha256"] = str(model["sha256"])  # the trainer need not hash a 7 GB checkpoint again
    if network_weights:
        hp["network_weights"] = network_weights  # continue training: the file in the job's network channel
    return hp


def part_keys(model: dict) -> dict[str, str]:
    """FLUX.1's separate clip_l / t5xxl / ae files of a model manifest, by part."""
    return {p: v["file"] for p, v in (model.get("parts") or {}).items()}


def model_or_empty(store, name: str) -> dict:
    from .spec import read_manifest

    try:
        return read_manifest(store, "models", name)
    except UserError:
        return {}


def final_pulled(rec: JobRecord) -> bool:
    return any(p.get("final", True) for p in rec.pulled)
