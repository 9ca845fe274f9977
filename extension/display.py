"""Names from the user's files shown on a terminal: control and bidi characters escaped, so a file name cannot
forge lines of a report (a newline) or reorder what the reader sees (a right-to-left override)."""
from __future__ import annotations

import unicodedata

# Bidi embedding, override and isolate controls, and the marks: they reorder the text that follows them.
BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def name(text) -> str:
    """One name (a file, a folder, a trigger word): every control character (newlines too) and bidi control
    written as its escape, e.g. 'a\\u202egnp.exe'."""
    return "".join(_escape(ch) if ch in BIDI or unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
                   for ch in str(text))


def message(text) -> str:
    """A whole message of several lines (which may quote names): its own newlines kept, every other control and
    bidi character escaped."""
    return "\n".join(name(line) for line in str(text).split("\n"))
