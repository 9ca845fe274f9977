"""Following a job from a terminal: its log lines as they come (`cloudlora logs --follow`), reached through
cloudlora.jobs.service (whose `wait` follows a job to its end for `cloudlora train --wait`)."""
from __future__ import annotations

from typing import Iterator

from ..settings import Settings
from . import backends
from .job_store import get_record, open_job_store, resolve_settings


def follow_logs(job_id: str, settings: Settings | None = None, *, follow: bool = True,
                interval: float = 1.0) -> Iterator[str]:
    """Yields the job's log lines; with follow, keeps going until the job ends."""
    settings = resolve_settings(settings)
    rec = get_record(open_job_store(settings), job_id)
    yield from backends.of(rec.spec.backend).logs(rec, settings, follow=follow, interval=interval)
