"""The one small interface the lifecycle (service, actions, follow, status) calls a job's backend through.

A backend is a module with these functions; `local_backend/backend.py` (this machine) and
`sagemaker_backend/backend.py` (boto3) are the two:

    place(rec, store) -> None                        name where a new job lives (rec.local_dir, rec.sagemaker_name)
                                                     before its record is first saved
    submit(rec, inputs, settings, store, say)        start the new job (say: progress in words); on failure, remove
                                                     what it made
    refresh(rec, settings, *, with_logs) -> None     copy the backend's status into the record (not saved here)
    stop(rec, settings) -> str                       ask the job to stop; the words for the user
    resume(rec, settings, store, inputs) -> str      start a Stopped or Failed job again from its checkpoint
    delete(rec) -> None                              remove what the backend keeps on this machine
    logs(rec, settings, *, follow, interval)         the job's log lines (an iterator); with follow, to its end
    live(rec, settings, store) -> Live               what the job panel shows while it runs
    cost(rec) -> (cost_usd, spot_savings)            0.0/None locally; SageMaker's billable time x price

`cloudlora.jobs.backends.of(name)` picks one by the spec's backend name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

from ..settings import Settings
from .records import JobRecord

@dataclass
class Inputs:
    """What a run of a job reads: the same for its first run and every resume."""
    model_key: str  # the checkpoint's store key
    dataset: str  # the dataset's name in the store
    config: str  # the TOML text
    hyperparameters: dict[str, str]
    part_keys: dict[str, str] = field(default_factory=dict)  # FLUX.1's separate files {"clip_l"|"t5xxl"|"ae": key}
    weights: Path | None = None  # a new job's LoRA to continue from (staged by the backend)
    captioner: str = ""  # caption = "wd14" | "florence2" in the TOML: its files go to the captioner channel


# A resume's inputs depend on the LoRA it continues from, which each backend keeps in its own place: the backend
# passes that file's name ("" for none) and gets the inputs.
InputsFor = Callable[[str], Inputs]


@dataclass
class Live:
    """What the job panel shows of a job while it runs: the log's end, the loss curve's events and the samples."""
    log_text: str
    tensorboard_dir: Path
    samples: list[Path]


class Backend(Protocol):
    def place(self, rec: JobRecord, store) -> None: ...

    def submit(self, rec: JobRecord, inputs: Inputs, settings: Settings, store,
               say: Callable[[str], None] = ...) -> None: ...

    def refresh(self, rec: JobRecord, settings: Settings, *, with_logs: bool = False) -> None: ...

    def stop(self, rec: JobRecord, settings: Settings) -> str: ...

    def resume(self, rec: JobRecord, settings: Settings, store, inputs: InputsFor) -> str: ...

    def delete(self, rec: JobRecord) -> None: ...

    def logs(self, rec: JobRecord, settings: Settings, *, follow: bool, interval: float) -> Iterator[str]: ...

    def live(self, rec: JobRecord, settings: Settings, store) -> Live: ...

    def cost(self, rec: JobRecord) -> tuple[float | None, float | None]: ...
