"""REST routes for checkpoints (under /cloudlora/v1): the same functions as the CLI and the Checkpoints panel.

GET    /models                         -> {"store", "models": [manifest], "total_bytes"}
GET    /models/{name}                  -> manifest
POST   /models/upload {"path", "name"?, "family"?, "clip_l"?, "t5xxl"?, "ae"?} -> {"task_id"}   (a path ON the WebUI machine: never multi-GB
                                          through the browser; the upload runs in the background)
GET    /models/tasks/{task_id}         -> {"id", "status": running|done|failed|cancelled, "progress", "result"?,
                                           "error"?}
POST   /models/tasks/{task_id}/cancel  -> the same (cancelling; a later upload of the file resumes)
DELETE /models/{name}                  -> {"deleted", "objects"}
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from .. import settings as settings_mod
from ..errors import UserError
from .errors import http_error

router = APIRouter()


class ModelUpload(BaseModel):
    path: str
    name: Optional[str] = None
    family: Optional[str] = None
    clip_l: Optional[str] = None  # FLUX.1's separate files, for a transformer-only checkpoint
    t5xxl: Optional[str] = None
    ae: Optional[str] = None


def open_store():
    from ..store import open_store as _open

    return _open(settings_mod.resolve())


def task_status(task_id: str, cancel: bool = False) -> dict:
    from ..assets import tasks

    task = tasks.get(task_id)
    if task is None:
        raise HTTPException(status_code=404, detail={"message": f"No task {task_id}.", "fix": ""})
    if cancel:
        task.cancel()
    return task.to_dict()


@router.get("/models", summary="Checkpoints in the store, with the total size")
def list_models() -> dict:
    from ..assets import models

    broken: list = []
    try:
        store = open_store()
        items = models.list_models(store, broken)
    except UserError as err:
        raise http_error(err) from err
    return {"store": store.uri(""), "models": items, "total_bytes": sum(int(m.get("size", 0)) for m in items),
            "broken": broken}


@router.get("/models/{name}", summary="One checkpoint's manifest")
def show_model(name: str) -> dict:
    from ..assets import models

    try:
        return models.get_model(open_store(), name)
    except UserError as err:
        raise http_error(err, 404) from err


@router.post("/models/upload", summary="Upload a checkpoint from a path on this machine, in the background")
def upload_model(body: ModelUpload) -> dict:
    from ..assets import models, tasks

    try:
        path = Path(body.path).expanduser()
        family = models.family_of(path, body.family) if path.is_file() else None  # quick errors now, not later
        if family is None:
            raise UserError(f"{path} does not exist or is not a file.",
                            "Give the path of a checkpoint on the WebUI machine.")
        parts = {"clip_l": body.clip_l, "t5xxl": body.t5xxl, "ae": body.ae}
        from ..assets import flux_parts

        flux_parts.check(path, family, parts)  # a missing or wrong part file is reported now, not after hashing
        store = open_store()
        task = tasks.start(f"model upload {path.name}", models.upload_model, store, path, name=body.name,
                           family=family, parts=parts)
    except UserError as err:
        raise http_error(err) from err
    return {"task_id": task.id}


@router.get("/models/tasks/{task_id}", summary="Progress and result of an upload")
def upload_status(task_id: str) -> dict:
    return task_status(task_id)


@router.post("/models/tasks/{task_id}/cancel", summary="Cancel an upload (it resumes when started again)")
def cancel_upload(task_id: str) -> dict:
    return task_status(task_id, cancel=True)


@router.delete("/models/{name}", summary="Delete a checkpoint from the store")
def delete_model(name: str) -> dict:
    from ..assets import models

    try:
        return {"deleted": name, "objects": models.delete_model(open_store(), name)}
    except UserError as err:
        raise http_error(err, 404) from err
