"""The one error type users see: what went wrong, naming the thing, and how to fix it."""
from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix. The CLI exits 1 on it; the tabs and REST routes show `str(err)`."""

    def __init__(self, message: str, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(message if not fix else f"{message}\nFix: {fix}")
