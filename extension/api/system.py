"""REST routes for the system (mounted under /cloudlora/v1): the doctor, and AWS setup as a polled background task.

GET  /doctor[?instance_type=T&instance_type=U][&backend=local|sagemaker]
                                               -> {"ok": bool, "checks": [{name, status, detail, fix}]}
     (ok: the chosen backend has what it needs; with Local, AWS lines are information)
POST /setup {"action": "setup"|"delete", "rebuild": bool, "empty_bucket": bool} -> {"task_id": id}
GET  /setup/{task_id}  -> {"id", "action", "state": running|done|failed|declined, "messages", "result", "error", "fix"}
"""
from __future__ import annotations

from typing import List, Optional

from fastapi import APIRouter, Query
from pydantic import BaseModel

from .. import settings as settings_mod
from ..errors import UserError
from .errors import http_error

router = APIRouter()


class SetupRequest(BaseModel):
    action: str = "setup"
    rebuild: bool = False
    empty_bucket: bool = False  # delete only: empty a non-empty bucket (the REST form of the question)


@router.get("/doctor", summary="Every check the doctor makes, with the fix for each problem")
def doctor(instance_type: Optional[List[str]] = Query(None), backend: Optional[str] = Query(None)) -> dict:
    from ..doctor import has_problem, run_checks

    try:
        if backend not in (None, "", "local", "sagemaker"):
            raise UserError(f"backend={backend!r} is not a backend.", "Use backend=local or backend=sagemaker.")
        checks = run_checks(settings_mod.resolve({"backend": backend}), instance_types=instance_type or None)
    except UserError as err:  # e.g. a broken settings file
        raise http_error(err) from err
    return {"ok": not has_problem(checks), "checks": [c.to_dict() for c in checks]}


@router.post("/setup", summary="Start AWS setup (or delete) in the background; poll GET /setup/{task_id}")
def start_setup(body: Optional[SetupRequest] = None) -> dict:
    from ..aws import tasks

    body = body or SetupRequest()
    try:
        options = {"empty_bucket": body.empty_bucket} if body.action == "delete" else {"rebuild": body.rebuild}
        return {"task_id": tasks.start(body.action, **options)}
    except UserError as err:
        raise http_error(err) from err


@router.get("/setup/{task_id}", summary="Progress and result of a setup task")
def setup_status(task_id: str) -> dict:
    from ..aws import tasks

    try:
        return tasks.get(task_id)
    except UserError as err:
        raise http_error(err, 404) from err
