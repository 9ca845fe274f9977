"""Following a job from a terminal: its log lines as they come (`cloudlora logs --follow`), reached through
cloudlora.jobs.service (whose `wait` follows a job to its end for `cloudlora train --wait`)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

from ..settings import Settings
from .local_backend import local
from .records import TERMINAL
from .job_store import get_record, open_job_store, resolve_settings


def follow_logs(job_id: str, settings: Settings | None = None, *, follow: bool = True,
                interval: float = 1.0) -> Iterator[str]:
    """Yields the job's log lines; with follow, keeps going until the job ends."""
    settings = resolve_settings(settings)
    store = open_job_store(settings)
    rec = get_record(store, job_id)
    if rec.spec.backend == "sagemaker":
        from .sagemaker_backend import sagemaker

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
