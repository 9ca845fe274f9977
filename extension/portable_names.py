"""Names that are files and folders on every OS the extension runs on: Windows rules, checked everywhere.

A dataset zipped or uploaded on Linux or macOS is trained, pulled or extracted on Windows too, where `a:b.png`
writes an NTFS alternate data stream of `a`, `CON` / `NUL` / `COM1.png` (any extension) name devices, trailing dots
and spaces are silently stripped (two names become one), `<>"|?*` raise OSError, and `\\` is a path separator.
Case-insensitive file systems (NTFS, APFS) make `01.PNG` and `01.png` one file.
"""
from __future__ import annotations

import re
from typing import Iterable

RESERVED = frozenset({"con", "prn", "aux", "nul", "conin$", "conout$", *(f"com{i}" for i in "123456789¹²³"),
                      *(f"lpt{i}" for i in "123456789¹²³")})
_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def is_reserved(part: str) -> bool:
    """A Windows device name, with or without an extension ('NUL', 'com1.png', 'CON .txt')."""
    return part.split(".", 1)[0].rstrip(" ").lower() in RESERVED


def problem(part: str) -> str | None:
    """Why one path component cannot be a file or folder name on Windows, or None."""
    if part in ("", ".", ".."):
        return "it is empty or '.'/'..'"
    bad = _FORBIDDEN.search(part)
    if bad:
        ch = bad.group(0)
        return f"it contains {ch!r}" + (" (an NTFS alternate data stream)" if ch == ":" else "") + \
            ", which Windows does not allow in a name"
    if part[-1] in ". ":
        return "it ends with a dot or a space, which Windows strips (so two names can become one)"
    if is_reserved(part):
        return f"'{part.split('.', 1)[0]}' is a device name on Windows (with any extension)"
    return None


def path_problem(parts: Iterable[str]) -> str | None:
    """The first component's problem ('name: why'), or None."""
    for part in parts:
        why = problem(part)
        if why:
            return f"'{part}': {why}"
    return None


def case_duplicates(paths: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs (first, second) of paths that are one file on a case-insensitive file system."""
    seen: dict[str, str] = {}
    out = []
    for p in paths:
        key = p.casefold()
        if key in seen and seen[key] != p:
            out.append((seen[key], p))
        else:
            seen.setdefault(key, p)
    return out
