"""REST routes for captions (under /cloudlora/v1): the same functions as the Datasets panel's review and Caption, and
`cloudlora dataset tags|caption`.

POST /datasets/captions {"path"}                      -> {root, items, tags: [[tag, n]], trigger: {missing, uncaptioned}}
POST /datasets/captions/edit {"path", "image", "caption"} -> the item ("image": its path in the dataset, 10_x/a.png)
POST /datasets/captions/remove-tag {"path", "tag"}    -> {"tag", "changed": [image]}
POST /datasets/caption {"path", "with", "mode"?, "threshold"?, "character_threshold"?, "exclude"?, "detail"?}
                                                      -> {"task_id"}  (follow it: GET /datasets/tasks/{task_id})
GET  /captioners                                      -> [{name, title, kind, repo, approx_bytes, cached, folder}]
`path` is the dataset's folder on the WebUI machine (or a .zip, or the name of a folder in its data folder's
imports/); nothing outside that folder is read or written.
"""
from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..errors import UserError
from .errors import http_error

router = APIRouter()


class CaptionsPath(BaseModel):
    path: str


class CaptionEdit(BaseModel):
    path: str
    image: str
    caption: str


class TagRemoval(BaseModel):
    path: str
    tag: str


class CaptionRequest(BaseModel):
    path: str
    captioner: str = Field("wd14", alias="with")
    mode: str = "keep"
    threshold: float = 0.35
    character_threshold: float = 0.85
    exclude: str = ""
    detail: str = "short"


@router.post("/datasets/captions", summary="A dataset's captions for review: items, tag frequencies, trigger check")
def review(body: CaptionsPath) -> dict:
    from ..assets import captions

    try:
        return captions.review(captions.dataset_folder(body.path))
    except UserError as err:
        raise http_error(err) from err


@router.post("/datasets/captions/edit", summary="Write one image's caption (atomically, beside the image)")
def edit(body: CaptionEdit) -> dict:
    from ..assets import captions

    try:
        return captions.edit_caption(captions.dataset_folder(body.path), body.image, body.caption)
    except UserError as err:
        raise http_error(err) from err


@router.post("/datasets/captions/remove-tag", summary="Remove one tag from every caption of a dataset")
def remove_tag(body: TagRemoval) -> dict:
    from ..assets import captions

    try:
        return captions.remove_tag(captions.dataset_folder(body.path), body.tag)
    except UserError as err:
        raise http_error(err) from err


@router.post("/datasets/caption", summary="Caption a dataset on this machine in the background (WD14 or Florence-2)")
def caption(body: CaptionRequest) -> dict:
    from ..assets import captioning, captions, tasks

    try:
        root = captions.dataset_folder(body.path)
        opts = captioning.CaptionOptions(body.captioner, body.mode, body.threshold, body.character_threshold,
                                         body.exclude, body.detail).check()
        task = tasks.start(f"caption {root.name}", captioning.caption_dataset, root, opts, setup=True)
    except UserError as err:
        raise http_error(err) from err
    return {"task_id": task.id}


@router.get("/captioners", summary="The captioners, their download size and whether they are cached")
def list_captioners() -> list:
    from ..assets import captioners

    return captioners.table()
