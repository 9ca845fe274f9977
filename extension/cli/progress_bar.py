"""What the CLI's store commands share: the terminal progress bar and the store the settings name."""
from __future__ import annotations

import sys
import threading

from .. import settings as settings_mod
from ..assets.transfer import Progress


class ProgressBar:
    """A one-line bar on a terminal: phase, bytes, rate, ETA; silent when stderr is not a terminal."""

    def __init__(self, stream=None, width: int = 28):
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = self.stream.isatty()
        self._last = ""
        self._lock = threading.Lock()

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        filled = int(self.width * min(1.0, p.fraction))
        line = f"\r[{'#' * filled}{'.' * (self.width - filled)}] {p.fraction * 100:5.1f}% {p.text()}"
        if p.item:
            line += f"  {p.item[-40:]}"
        with self._lock:
            if line != self._last:
                self.stream.write(line.ljust(len(self._last)))
                self.stream.flush()
                self._last = line

    def close(self) -> None:
        if self.enabled and self._last:
            self.stream.write("\n")
            self.stream.flush()
            self._last = ""


def open_store():
    from ..store import open_store as _open

    return _open(settings_mod.resolve())
