"""Following a job from a terminal: its log lines as they come (`cloudlora logs --follow`) and waiting for its end
(`cloudlora train --wait`); both through cloudlora.jobs.service."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterator

from ..settings import Settings
from . import local
from .records import TERMINAL
from .service import _get_record, _settings, _store, get_job


def follow_logs(job_id: str, settings: Settings | None = None, *, follow: bool = True,
                interval: float = 1.0) -> Iterator[str]:
    """Yields the job's log lines; with follow, keeps going until the job ends."""
    settings = _settings(settings)
    store = _store(settings)
    rec = _get_record(store, job_id)
    if rec.spec.backend == "sagemaker":
        from . import sagemaker

        if follow:
            yield from sagemaker.follow(settings, rec.sagemaker_name or rec.id, interval=max(interval, 5.0))
        else:
            yield from sagemaker.log_events(settings, rec.sagemaker_name or rec.id)[0]
        return
    path = local.log_path(Path(rec.local_dir))
    pos = 0
    buf = ""
    while True:
        if path.exists():
            with open(path, "rb") as f:
                f.seek(pos)
                chunk = f.read()
                pos += len(chunk)
            buf += chunk.decode("utf-8", "replace")
            *lines, buf = buf.split("\n")
            yield from lines
        if not follow:
            if buf:
                yield buf
            return
        st = local.status(Path(rec.local_dir))
        if st["status"] in TERMINAL:
            if path.exists():
                with open(path, "rb") as f:
                    f.seek(pos)
                    rest = buf + f.read().decode("utf-8", "replace")
                yield from (ln for ln in rest.split("\n") if ln)
            return
        time.sleep(interval)


def wait(job_id: str, settings: Settings | None = None, *, on_update: Callable[[dict], None] | None = None,
         interval: float = 1.0) -> dict:
    """Polls until the job ends (auto-pulling when it completes); returns the last get_job()."""
    while True:
        info = get_job(job_id, settings, log_lines=20)
        if on_update:
            on_update(info)
        if info["status"] in TERMINAL:
            return info
        time.sleep(interval)
