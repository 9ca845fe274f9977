"""REST routes for fetching a base model (under /cloudlora/v1): the same function as `cloudlora model fetch` and the
Checkpoints panel's Fetch.

GET  /models/fetch/bases  -> {"bases": [{key, label, family, repo, file, size, licence, licence_url, gated, ...}]}
POST /models/fetch {"source", "file"?, "revision"?, "name"?, "family"?, "token"?} -> {"task_id"}
     (downloads into the checkpoint folder, then uploads; follow it at GET /models/tasks/{task_id}, cancel at
     POST /models/tasks/{task_id}/cancel; a later fetch of the same source resumes). A `token` is used for this
     fetch only, never stored by this route.
"""
from __future__ import annotations

from typing import Optional

from fastapi import APIRouter
from pydantic import BaseModel

from ..errors import UserError
from .errors import http_error

router = APIRouter()


class ModelFetch(BaseModel):
    source: str
    file: Optional[str] = None
    revision: Optional[str] = None
    name: Optional[str] = None
    family: Optional[str] = None
    token: Optional[str] = None


@router.get("/models/fetch/bases", summary="Well-known base models (family, size, licence)")
def bases() -> dict:
    from ..assets import known_bases

    return {"bases": [b.as_dict() for b in known_bases.BASES]}


@router.post("/models/fetch", summary="Download a base model from Hugging Face or a URL, then upload it")
def fetch(body: ModelFetch) -> dict:
    from ..assets import model_fetch, tasks
    from .models import open_store

    try:
        source = model_fetch.parse_source(body.source, body.file, body.revision)  # a bad source is a 400 now
        task = tasks.start(f"model fetch {source.describe()}", model_fetch.fetch_model, open_store(), source,
                           name=body.name, family=body.family, token=body.token)
    except UserError as err:
        raise http_error(err) from err
    return {"task_id": task.id}
