"""Progress of long asset work (hashing, uploading, verifying): bytes, rate over a sliding window, ETA, files; and
Cancelled, which a user's cancel raises (what was sent is kept). Shared by uploads, dataset preparation and the tabs.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable


class Cancelled(Exception):
    """The user cancelled; what was sent is kept, so the next upload of the same file resumes."""


@dataclass
class Progress:
    phase: str  # "hashing" | "uploading" | "verifying" | "done"
    done: int
    total: int
    rate: float = 0.0  # bytes/s over the last few seconds
    eta: float | None = None  # seconds
    item: str = ""  # the file being sent
    files_done: int = 0
    files_total: int = 0

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    def text(self) -> str:
        eta = "" if self.eta is None else f"  ETA {format_duration(self.eta)}"
        files = f"  files {self.files_done}/{self.files_total}" if self.files_total else ""
        return (f"{self.phase} {format_bytes(self.done)} / {format_bytes(self.total)}"
                f"  {format_bytes(self.rate)}/s{eta}{files}")


ProgressCallback = Callable[[Progress], None]


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def format_duration(s: float) -> str:
    s = int(s + 0.5)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Meter:
    """Counts bytes from several threads and reports Progress with a rate over a sliding window."""

    def __init__(self, callback: ProgressCallback | None, phase: str, total: int, *, done: int = 0, item: str = "",
                 files_total: int = 0, min_interval: float = 0.0):
        self.callback, self.phase, self.total, self.done, self.item = callback, phase, total, done, item
        self.files_done, self.files_total = 0, files_total
        self._lock = threading.Lock()
        self._window: list[tuple[float, int]] = [(time.monotonic(), done)]
        self._last_emit = 0.0
        self._min_interval = min_interval

    def add(self, n: int, *, item: str | None = None, file_done: bool = False) -> None:
        with self._lock:
            self.done += n
            if item is not None:
                self.item = item
            if file_done:
                self.files_done += 1
            self._emit_locked(force=file_done)

    def emit(self, phase: str | None = None, force: bool = True) -> None:
        with self._lock:
            if phase:
                self.phase = phase
            self._emit_locked(force=force)

    def snapshot(self) -> Progress:
        with self._lock:
            return self._progress_locked()

    def _progress_locked(self) -> Progress:
        now = time.monotonic()
        self._window.append((now, self.done))
        while len(self._window) > 2 and now - self._window[0][0] > 5.0:
            self._window.pop(0)
        t0, d0 = self._window[0]
        rate = (self.done - d0) / (now - t0) if now > t0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else None
        return Progress(self.phase, self.done, self.total, rate, eta, self.item, self.files_done, self.files_total)

    def _emit_locked(self, force: bool) -> None:
        now = time.monotonic()
        if not self.callback or (not force and now - self._last_emit < self._min_interval and self.done < self.total):
            return
        self._last_emit = now
        self.callback(self._progress_locked())
