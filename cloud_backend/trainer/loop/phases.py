"""Where a run's time and memory go: wall time per phase (caption, load, cache, setup, steps, samples, save), the peak GPU
memory and the peak host memory (RSS) in each, and the time to the first step; printed at the end of the log.

The summary is two lines: one for people, and one machine-readable `phases={...}` JSON line that the Train tab
reads from the job's log (extension/jobs/results/phases.py parses it). Phases may repeat (samples every N steps): their
times add up and their peaks are the highest seen.
"""
from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from pathlib import Path

import torch

# The order the summary lists them in; every phase a run enters is listed, known or not.
ORDER = ("caption", "load", "class images", "cache", "setup", "steps", "validation", "samples", "save")
PREFIX = "phases="
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _rss_peak_kib() -> int:
    """The process's peak RSS since the last reset (VmHWM), else its lifetime peak (getrusage; psutil's peak working
    set where there is no `resource`, i.e. Windows); 0 when nothing tells."""
    try:
        m = re.search(r"^VmHWM:\s+(\d+)\s+kB", _STATUS.read_text(), re.M)
        if m:
            return int(m.group(1))
    except OSError:
        pass
    try:
        import resource  # Unix only: imported here so that the trainer imports on Windows

        peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return peak // 1024 if sys.platform == "darwin" else peak  # unix-only: macOS counts bytes, Linux KiB
    except (ImportError, AttributeError, OSError, ValueError):
        pass
    try:
        import psutil

        mem = psutil.Process().memory_info()
        return int(getattr(mem, "peak_wset", 0) or mem.rss) // 1024
    except Exception:  # noqa: BLE001 - a memory figure must never fail a run
        return 0


def _reset_rss_peak() -> bool:
    """Linux resets VmHWM to the current RSS on `5` in clear_refs (since 4.0); elsewhere peaks are lifetime ones."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


class PhaseClock:
    """Times the phases of one run on `device`. `with clock.phase("steps"): ...`; `clock.summary()` at the end."""

    def __init__(self, device: torch.device, started: float | None = None):
        self.device = torch.device(device)
        self.started = time.perf_counter() if started is None else started
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.gpu_peak: dict[str, float] = {}  # GiB allocated by torch
        self.rss_peak: dict[str, float] = {}  # GiB
        self.first_step_s: float | None = None
        self.steps = 0
        self._per_phase_rss = True
        self._open: tuple[str, float] | None = None

    def _gpu(self) -> bool:
        return self.device.type == "cuda" and torch.cuda.is_available()

    def begin(self, name: str) -> None:
        """Phases do not nest: beginning one inside another is a bug, and raises."""
        if self._open is not None:
            raise RuntimeError(f"phase {name!r} begun inside phase {self._open[0]!r}")
        if self._gpu():
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._per_phase_rss = _reset_rss_peak() and self._per_phase_rss
        self._open = (name, time.perf_counter())

    def end(self, name: str) -> None:
        if self._open is None or self._open[0] != name:
            raise RuntimeError(f"phase {name!r} ended without beginning (open: {self._open})")
        if self._gpu():
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / 2**30
            self.gpu_peak[name] = max(self.gpu_peak.get(name, 0.0), peak)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - self._open[1]
        self.counts[name] = self.counts.get(name, 0) + 1
        self.rss_peak[name] = max(self.rss_peak.get(name, 0.0), _rss_peak_kib() / 2**20)
        self._open = None

    @contextlib.contextmanager
    def phase(self, name: str):
        self.begin(name)
        try:
            yield
        finally:
            self.end(name)

    def step_done(self) -> None:
        """Called after each optimizer step; the first one fixes the time to first step."""
        self.steps += 1
        if self.first_step_s is None:
            if self._gpu():
                torch.cuda.synchronize(self.device)
            self.first_step_s = time.perf_counter() - self.started

    def record(self) -> dict:
        names = [n for n in ORDER if n in self.seconds] + [n for n in self.seconds if n not in ORDER]
        out = {
            "seconds": {n: round(self.seconds[n], 3) for n in names},
            "count": {n: self.counts[n] for n in names},
            "total_s": round(time.perf_counter() - self.started, 3),
            "first_step_s": None if self.first_step_s is None else round(self.first_step_s, 3),
            "steps": self.steps,
            "peak_rss_gib": {n: round(self.rss_peak[n], 3) for n in names if n in self.rss_peak},
            "rss_per_phase": self._per_phase_rss,
        }
        if self.gpu_peak:
            out["peak_gpu_gib"] = {n: round(self.gpu_peak[n], 3) for n in names if n in self.gpu_peak}
            out["gpu"] = torch.cuda.get_device_name(self.device)
        return out

    def summary(self) -> list[str]:
        """The two closing log lines: for people, then `phases={json}`."""
        return [format_summary(self.record()), PREFIX + json.dumps(self.record(), separators=(",", ":"))]


def format_summary(rec: dict) -> str:
    """'time: load 12.1 s, cache 3.0 s, steps 95.2 s (30 steps, 0.32 it/s), ... | peak GPU ... | peak RSS ...'."""
    parts = []
    for name, secs in rec["seconds"].items():
        extra = ""
        if name == "steps" and rec.get("steps"):
            extra = f" ({rec['steps']} steps, {rec['steps'] / max(secs, 1e-9):.2f} it/s)"
        elif rec["count"].get(name, 1) > 1:
            extra = f" ({rec['count'][name]}x)"
        parts.append(f"{name} {secs:.1f} s{extra}")
    line = f"time: {', '.join(parts)}; total {rec['total_s']:.1f} s"
    if rec.get("first_step_s") is not None:
        line += f", first step after {rec['first_step_s']:.1f} s"
    if rec.get("peak_gpu_gib"):
        line += " | peak GPU memory: " + ", ".join(f"{n} {v:.2f} GiB" for n, v in rec["peak_gpu_gib"].items())
    if rec.get("peak_rss_gib"):
        what = "peak host memory (RSS)" if rec.get("rss_per_phase", True) else "peak host memory (RSS, since start)"
        line += f" | {what}: " + ", ".join(f"{n} {v:.2f} GiB" for n, v in rec["peak_rss_gib"].items())
    return line
