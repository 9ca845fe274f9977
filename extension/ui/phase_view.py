"""The Train tab's "where the time went" section for a finished job: the trainer's per-phase times and peak memory
(extension/jobs/results/phases.py reads them from the job's log). Kept apart from the job view's layout."""
from __future__ import annotations


def section(job: dict) -> str:
    """Markdown to append under the job's status line; empty while the job runs or when its log has no summary."""
    from ..jobs.results import phases

    text = phases.markdown(job.get("phases"))
    return f"\n\n**Where the time went**\n\n{text}" if text else ""
