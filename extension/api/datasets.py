"""REST routes for datasets (under /cloudlora/v1): the same functions as the CLI and the Datasets panel.

GET    /datasets                          -> {"store", "datasets": [manifest], "total_bytes"}
GET    /datasets/{name}                   -> manifest
POST   /datasets/check {"path"}           -> the validation report {ok, errors, warnings, summary, items}
POST   /datasets/wrap {"path", "trigger"?, "repeats"?} -> {"root", "report"}  (a folder of images, copied as
                                          <repeats>_<trigger>/; the folder itself is left as it is)
POST   /datasets/upload {"path", "name"?} -> {"task_id"}  (refused at once when the check has errors)
GET    /datasets/tasks/{task_id}          -> {"id", "status", "progress", "result"?, "error"?}  (a result renamed on
                                          a real collision, NAME-2, carries "renamed_from" and "rename_note")
POST   /datasets/tasks/{task_id}/cancel   -> the same
DELETE /datasets/{name}                   -> {"deleted", "objects"}
Paths are folders (or .zip files) on the WebUI machine.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from fastapi import APIRouter
from pydantic import BaseModel

from ..errors import UserError
from .errors import http_error
from .models import open_store, task_status

router = APIRouter()


class DatasetPath(BaseModel):
    path: str
    name: Optional[str] = None


def _folder(path: str) -> Path:
    from ..assets import dataset_import

    p = Path(path).expanduser()
    return dataset_import.import_zip(p) if p.is_file() and p.suffix.lower() == ".zip" else p


@router.get("/datasets", summary="Datasets in the store, with the total size")
def list_datasets() -> dict:
    from ..assets import datasets

    broken: list = []
    try:
        store = open_store()
        items = datasets.list_datasets(store, broken)
    except UserError as err:
        raise http_error(err) from err
    return {"store": store.uri(""), "datasets": items, "total_bytes": sum(int(d.get("size", 0)) for d in items),
            "broken": broken}


@router.get("/datasets/{name}", summary="One dataset's manifest")
def show_dataset(name: str) -> dict:
    from ..assets import datasets

    try:
        return datasets.get_dataset(open_store(), name)
    except UserError as err:
        raise http_error(err, 404) from err


@router.post("/datasets/check", summary="Validate a dataset folder or .zip: errors, warnings, summary, items")
def check(body: DatasetPath) -> dict:
    from ..assets import dataset_import
    from ..assets.dataset_check import check_dataset

    try:
        with dataset_import.extracted_for_check(body.path) as folder:  # a zip's extraction goes again afterwards
            return check_dataset(folder).to_dict()
    except UserError as err:
        raise http_error(err) from err


class WrapRequest(BaseModel):
    path: str
    trigger: Optional[str] = None
    repeats: Optional[int] = None


@router.post("/datasets/wrap", summary="Copy a folder of images as a dataset laid out as <repeats>_<trigger>/")
def wrap(body: WrapRequest) -> dict:
    from ..assets.dataset_check import check_dataset
    from ..assets.dataset_import import wrap_folder

    try:
        root = wrap_folder(body.path, trigger=body.trigger, repeats=body.repeats)
    except UserError as err:
        raise http_error(err) from err
    return {"root": str(root), "report": check_dataset(root).to_dict()}


@router.post("/datasets/upload", summary="Check, then upload a dataset in the background")
def upload(body: DatasetPath) -> dict:
    from ..assets import datasets, tasks

    try:
        folder = _folder(body.path)
        datasets.check_or_raise(folder)
        task = tasks.start(f"dataset upload {folder.name}", datasets.upload_dataset, open_store(), folder,
                           name=body.name)
    except UserError as err:
        raise http_error(err) from err
    return {"task_id": task.id}


@router.get("/datasets/tasks/{task_id}", summary="Progress and result of a dataset upload")
def upload_status(task_id: str) -> dict:
    return task_status(task_id)


@router.post("/datasets/tasks/{task_id}/cancel", summary="Cancel a dataset upload (a re-run resumes)")
def cancel_upload(task_id: str) -> dict:
    return task_status(task_id, cancel=True)


@router.delete("/datasets/{name}", summary="Delete a dataset from the store")
def delete(name: str) -> dict:
    from ..assets import datasets

    try:
        return {"deleted": name, "objects": datasets.delete_dataset(open_store(), name)}
    except UserError as err:
        raise http_error(err, 404) from err
