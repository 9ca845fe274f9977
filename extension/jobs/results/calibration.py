"""This machine's measured training speed, kept after each finished local job so the next estimate is calibrated.

The trainer's closing `phases={...}` line (jobs/results/phases.py) says how long the steps, samples and everything else
(load, cache, setup, save) took. One record per device ("cpu" or "gpu"), family, resolution and batch lives in
<data dir>/calibration.json; the newest job on the same settings replaces the older one.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ...settings import data_dir

log = logging.getLogger(__name__)
FILE_NAME = "calibration.json"


@dataclass(frozen=True)
class Speed:
    s_per_step: float  # optimizer step, sampling and saving excluded
    s_per_sample: float  # one sample render (0 when the run made none)
    overhead_s: float  # load, cache, setup, save: the run's time outside steps and samples
    job_id: str = ""
    measured: str = ""  # when, UTC

    @property
    def it_per_s(self) -> float:
        return 1.0 / self.s_per_step if self.s_per_step > 0 else 0.0


def key(device: str, family: str, width: int, height: int, batch: int) -> str:
    return f"{device}|{family}|{width}x{height}|b{batch}"


def path() -> Path:
    return data_dir() / FILE_NAME


def _read() -> dict:
    try:
        data = json.loads(path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lookup(k: str) -> Speed | None:
    entry = _read().get(k)
    try:
        return Speed(**entry) if isinstance(entry, dict) else None
    except TypeError:  # a record from another version: no calibration rather than a crash
        return None


def speed_from_phases(rec: dict, job_id: str = "") -> Speed | None:
    """The Speed a finished run's phases record measured; None when it ran no steps."""
    seconds, count = rec.get("seconds") or {}, rec.get("count") or {}
    steps = int(rec.get("steps") or 0)
    if steps <= 0 or not seconds.get("steps"):
        return None
    samples = float(seconds.get("samples") or 0.0)
    n_samples = int(count.get("samples") or 0)
    total = float(rec.get("total_s") or sum(float(v) for v in seconds.values()))
    overhead = max(0.0, total - float(seconds["steps"]) - samples - float(seconds.get("validation") or 0.0))
    return Speed(float(seconds["steps"]) / steps, samples / n_samples if n_samples else 0.0, overhead, job_id,
                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def record(k: str, speed: Speed) -> None:
    """Keeps `speed` under `k` (atomically: two jobs finishing at once each leave a whole file)."""
    data = _read()
    data[k] = asdict(speed)
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{FILE_NAME}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, target)


def record_job(job_id: str, config_text: str, family: str, log_text: str) -> Speed | None:
    """Calibrates from a finished local job's log (its phases line); never raises: an estimate is a nice-to-have."""
    from . import config_values, phases

    try:
        rec = phases.parse(log_text)
        speed = speed_from_phases(rec, job_id) if rec else None
        if speed is None:
            return None
        cfg = config_values.flatten(config_text)
        w, h = config_values.resolution_of(cfg, family)
        device = "gpu" if rec.get("gpu") or rec.get("peak_gpu_gib") else "cpu"
        record(key(device, family, w, h, config_values.batch_of(cfg)), speed)
        return speed
    except Exception as err:  # noqa: BLE001 - see the docstring
        log.info("cloudlora: calibration from job %s failed: %s", job_id, err)
        return None
