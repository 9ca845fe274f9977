"""A user-fixable problem as an HTTP error: {"message", "fix"}, 400 unless the route says otherwise."""
from __future__ import annotations

from fastapi import HTTPException

from ..errors import UserError


def http_error(err: UserError, code: int = 400) -> HTTPException:
    return HTTPException(status_code=code, detail={"message": err.message, "fix": err.fix or ""})
