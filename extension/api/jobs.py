"""REST routes for training jobs (under /cloudlora/v1): the same functions as the Train tab and `cloudlora train|jobs`.

POST /jobs creates (idempotent by client_token), GET /jobs lists, GET /jobs/{id} shows, POST /jobs/{id}/stop,
POST /jobs/{id}/resume, POST /jobs/{id}/pull (with as_lora: a chosen epoch becomes the LoRA), DELETE /jobs/{id}
deletes the record, GET /jobs/{id}/logs, POST /jobs/estimate, POST|GET /jobs/{id}/epoch-grid (inside the WebUI:
epochs x weights with its own txt2img).
A user-fixable problem answers 400 with {"detail": {"message", "fix"}}; an unknown job 404.
"""
from __future__ import annotations

from typing import Dict, List, Optional

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from ..errors import UserError
from .errors import http_error

router = APIRouter()


class CreateJob(BaseModel):
    model: str
    dataset: str
    lora_name: str = ""
    family: str = ""
    config: str = ""  # Kohya TOML; "" = the family's defaults
    set: Dict[str, str] = {}  # key -> value edits applied to the config
    backend: str = ""  # local | sagemaker; "" = the settings'
    instance_type: str = ""
    spot: bool = True
    max_wait_s: int = 48 * 3600
    max_runtime_s: int = 24 * 3600
    container: str = "cloudlora"
    image_uri: str = ""
    client_token: str = ""  # send the same token again and you get the same job (no duplicate)
    continue_from: str = ""  # start from a LoRA: "job:<id>", a path, or a file in the Lora folder


class PullBody(BaseModel):
    lora_dir: Optional[str] = None
    file: Optional[str] = None
    as_lora: bool = False  # with file: that epoch becomes the LoRA, under the LoRA's name


class GridBody(BaseModel):
    weights: List[float] = [0.6, 0.8, 1.0]


class EstimateBody(BaseModel):
    config: str = ""
    family: str = "sd15"
    dataset: str = ""
    instance_type: str = "local"
    backend: str = "local"
    spot: bool = False


def _fail(err: UserError) -> HTTPException:
    code = 404 if err.message.startswith("No training job") else 400
    return http_error(err, code)


@router.post("/jobs", summary="Create a training job (idempotent by client_token)")
def create(body: CreateJob) -> dict:
    from cloudlora_backend.trainer.config import train_config as kohya_config

    from .. import settings as settings_mod
    from ..jobs import service
    from ..jobs.spec import FAMILIES, JobSpec, read_manifest
    from ..store import open_store

    try:
        settings = settings_mod.resolve({"backend": body.backend})
        family = body.family
        if not family:
            fam = str(read_manifest(open_store(settings), "models", body.model).get("family") or "")
            family = fam if fam in FAMILIES else "sd15"
        text = body.config or kohya_config.default_toml(family)
        if body.set:
            try:
                text = kohya_config.set_keys(text, dict(body.set), family)
            except kohya_config.ConfigError as err:
                raise UserError(f"set: {err}", "Use sd-scripts key names.") from err
        spec = JobSpec(model=body.model, dataset=body.dataset, family=family, config=text,
                       lora_name=body.lora_name or body.dataset, backend=body.backend,
                       instance_type=body.instance_type, spot=body.spot, max_wait_s=body.max_wait_s,
                       max_runtime_s=body.max_runtime_s, container=body.container, image_uri=body.image_uri,
                       client_token=body.client_token, continue_from=body.continue_from)
        return service.create_job(spec, settings)
    except UserError as err:
        raise _fail(err) from err


@router.get("/jobs", summary="List training jobs with their current status")
def list_jobs() -> List[dict]:
    from ..jobs import service

    try:
        return service.list_jobs()
    except UserError as err:
        raise _fail(err) from err


@router.post("/jobs/estimate", summary="Steps, time and cost of a job before submitting")
def estimate(body: EstimateBody) -> dict:
    from ..jobs import service

    try:
        return service.estimate_job(config=body.config, family=body.family, dataset=body.dataset,
                                    instance_type=body.instance_type, backend=body.backend, spot=body.spot)
    except UserError as err:
        raise _fail(err) from err


@router.get("/jobs/{job_id}", summary="One job: status, step x/y, cost, loss points, samples, log tail, failure")
def get(job_id: str, log_lines: int = 200) -> dict:
    from ..jobs import service

    try:
        return service.get_job(job_id, log_lines=log_lines)
    except UserError as err:
        raise _fail(err) from err


@router.get("/jobs/{job_id}/logs", summary="The job's log lines so far")
def logs(job_id: str) -> dict:
    from ..jobs import service

    try:
        return {"id": job_id, "lines": list(service.follow_logs(job_id, follow=False))}
    except UserError as err:
        raise _fail(err) from err


@router.post("/jobs/{job_id}/stop", summary="Stop a job (the trainer saves a checkpoint)")
def stop(job_id: str) -> dict:
    from ..jobs import service

    try:
        return service.stop_job(job_id)
    except UserError as err:
        raise _fail(err) from err


@router.post("/jobs/{job_id}/resume", summary="Resume a Stopped or Failed job from its last checkpoint")
def resume(job_id: str) -> dict:
    from ..jobs import service

    try:
        return service.resume_job(job_id)
    except UserError as err:
        raise _fail(err) from err


@router.post("/jobs/{job_id}/pull", summary="Put the job's LoRA into the Lora folder (with sidecar and preview)")
def pull(job_id: str, body: Optional[PullBody] = None) -> dict:
    from .. import settings as settings_mod
    from ..jobs import service
    from ..library.pull import requested_lora_dir

    body = body or PullBody()
    try:
        settings = settings_mod.resolve()
        lora_dir = requested_lora_dir(settings, body.lora_dir) if body.lora_dir else None
        return service.pull_job(job_id, settings, lora_dir=lora_dir, file=body.file, as_lora=body.as_lora)
    except UserError as err:
        raise _fail(err) from err


@router.post("/jobs/{job_id}/epoch-grid", summary="Render the job's epochs x LoRA weights with the WebUI's txt2img")
def epoch_grid_start(job_id: str, body: Optional[GridBody] = None) -> dict:
    from ..jobs.results import epoch_grid

    try:
        return epoch_grid.start(job_id, (body or GridBody()).weights)
    except UserError as err:
        raise _fail(err) from err


@router.get("/jobs/{job_id}/epoch-grid", summary="The epoch grid's progress and file")
def epoch_grid_status(job_id: str) -> dict:
    from ..jobs.results import epoch_grid

    return epoch_grid.status(job_id)


@router.delete("/jobs/{job_id}", summary="Delete a finished job's record and store files (not the pulled LoRA)")
def delete(job_id: str) -> dict:
    from ..jobs import service

    try:
        return service.delete_record(job_id)
    except UserError as err:
        raise _fail(err) from err
