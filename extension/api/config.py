"""REST routes for the Kohya TOML (mounted under /cloudlora/v1): the same functions as the tab and `cloudlora config`."""
from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from cloudlora_backend.trainer.config import train_config as kohya_config

router = APIRouter()


class ConfigText(BaseModel):
    text: str
    family: Optional[str] = None


@router.get("/config/defaults")
def config_defaults(family: str = "sd15") -> dict:
    try:
        return {"family": family, "text": kohya_config.default_toml(family)}
    except kohya_config.ConfigError as err:
        raise HTTPException(status_code=400, detail={"errors": err.problems}) from err


@router.post("/config/check")
def config_check(body: ConfigText) -> dict:
    return kohya_config.check(body.text, body.family).as_dict()


@router.post("/config/format")
def config_format(body: ConfigText) -> dict:
    """200 with the formatted text and warnings, or 400 with every problem."""
    report = kohya_config.check(body.text, body.family)
    if not report.ok:
        raise HTTPException(status_code=400, detail={"errors": report.errors, "warnings": report.warnings})
    return {"text": kohya_config.format_toml(body.text, body.family), "warnings": report.warnings}
