"""What a zip extraction leaves in its folder: the done marker, and the entries it left out, read back from it.

Below both the dataset check (which reports the skipped entries) and the import (which writes the marker).
"""
from __future__ import annotations

import json
from pathlib import Path

DONE_MARKER = ".cloudlora-extracted"  # hidden: skipped by the check and never uploaded


def skipped_entries(folder: Path) -> list[str]:
    """The zip entries an import left out (hidden and system files), as its done marker recorded them."""
    try:
        data = json.loads((folder / DONE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return list(data.get("skipped") or []) if isinstance(data, dict) else []
