"""One caption file: the new caption merged with the old one (keep | append | replace, the trigger word first) and
written atomically, so a failure mid-write leaves the old caption whole."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

MODES = ("keep", "append", "replace")


def split_tags(text: str) -> list[str]:
    """'a,  b ,,c' -> ['a', 'b', 'c']: the comma-separated pieces of a caption, as sd-scripts reads them."""
    return [t.strip() for t in text.replace("\n", " ").split(",") if t.strip()]


def merge(existing: str, new: list[str], trigger: str, mode: str) -> str | None:
    """The caption to write, or None where the file stays as it is (keep, and a caption is already there).

    existing: the caption file's text ('' when none); new: the captioner's pieces (tags, or one sentence);
    trigger: the subset's trigger word ('' for none), put first and never repeated. append keeps the old pieces and
    adds the new ones it lacks."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    old = split_tags(existing)
    if mode == "keep" and old:
        return None
    pieces = old + new if mode == "append" else list(new)
    out: list[str] = [trigger.strip()] if trigger.strip() else []
    seen = {p.lower() for p in out}
    for piece in pieces:
        piece = " ".join(piece.split())
        if piece and piece.lower() not in seen:
            seen.add(piece.lower())
            out.append(piece)
    return ", ".join(out)


def read_text(path: Path | None) -> str:
    """A caption file's text ('' when there is none); an editor's BOM is not part of it."""
    if path is None or not path.is_file():
        return ""
    return path.read_bytes().decode("utf-8-sig").strip()  # UnicodeDecodeError: the caller skips the image


def write_atomic(path: Path, text: str) -> None:
    """Writes `text` (UTF-8, one line) to `path` through a temporary file in the same folder and os.replace: a reader
    sees the old caption or the new one, never half of either, and a failure leaves the old file untouched."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600; a caption keeps its own mode, a new one the usual
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8") + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask
