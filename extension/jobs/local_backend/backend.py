"""The local backend behind the lifecycle's interface (cloudlora.jobs.backend_interface): a job folder on this machine and the
detached runner (local.py does the work)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

from ...settings import Settings
from ..backend_interface import Inputs, InputsFor, Live
from ..records import TERMINAL, JobRecord
from . import local


def place(rec: JobRecord, store) -> None:
    rec.local_dir = str(local.job_dir(store, rec.id))


def submit(rec: JobRecord, inputs: Inputs, settings: Settings, store, say=lambda s: None) -> None:
    """Lays out the job folder and starts the runner; on any failure the folder is removed again."""
    from .. import continue_from

    jobdir = Path(rec.local_dir)
    try:
        _prepare(jobdir, store, inputs)
        if inputs.weights is not None:
            continue_from.stage_local(jobdir, inputs.weights)
        local.start(jobdir, settings)
    except BaseException:
        local.delete(jobdir)
        raise


def _prepare(jobdir: Path, store, inputs: Inputs) -> None:
    """The job folder's inputs (a captioner is the runner's to fetch and link: it may take minutes)."""
    local.prepare(jobdir, store, model_key=inputs.model_key, dataset_name=inputs.dataset, config_text=inputs.config,
                  hyperparameters=inputs.hyperparameters, part_keys=inputs.part_keys)


def refresh(rec: JobRecord, settings: Settings, *, with_logs: bool = False) -> None:
    """A local job's files are cheap to read and always the truth."""
    before = rec.status
    st = local.status(Path(rec.local_dir))
    rec.status, rec.secondary_status = st["status"], st["secondary_status"]
    if st["total_steps"]:
        rec.step, rec.total_steps = st["step"], st["total_steps"]
    rec.started, rec.ended, rec.failure = st["started"] or rec.started, st["ended"], st["failure"]
    if rec.status == "Completed" and before != "Completed":  # this machine's speed, for the next estimate
        from ..results import calibration

        try:
            text = local.log_path(Path(rec.local_dir)).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        calibration.record_job(rec.id, rec.spec.config, rec.spec.family, text)


def stop(rec: JobRecord, settings: Settings) -> str:
    return local.stop(Path(rec.local_dir))


def resume(rec: JobRecord, settings: Settings, store, inputs: InputsFor) -> str:
    """The runner starts again in the job's folder; its inputs are laid out again when they were removed."""
    from ..continue_from import staged_local

    jobdir = Path(rec.local_dir)
    if rec.started:  # the runs so far, so that elapsed goes on after the resume (status.summary)
        rec.earlier_training_s += round(max(0.0, (rec.ended or time.time()) - rec.started))
    return local.resume(jobdir, settings, prepare_inputs=lambda: _prepare(jobdir, store, inputs(staged_local(jobdir))))


def delete(rec: JobRecord) -> None:
    local.delete(Path(rec.local_dir))


def logs(rec: JobRecord, settings: Settings, *, follow: bool, interval: float) -> Iterator[str]:
    """The job's train.log from the start; with follow, the new lines as they come until the job ends."""
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
        if local.status(Path(rec.local_dir))["status"] in TERMINAL:
            if path.exists():
                with open(path, "rb") as f:
                    f.seek(pos)
                    rest = buf + f.read().decode("utf-8", "replace")
                yield from (ln for ln in rest.split("\n") if ln)
            return
        time.sleep(interval)


def live(rec: JobRecord, settings: Settings, store) -> Live:
    jobdir = Path(rec.local_dir)
    return Live(log_text=local.read_tail(local.log_path(jobdir)), tensorboard_dir=local.tensorboard_dir(jobdir),
                samples=local.samples(jobdir))


def cost(rec: JobRecord) -> tuple[float | None, float | None]:
    return 0.0, None
