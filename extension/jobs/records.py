"""Job records in the store (jobs/<id>/job.json): with SageMaker, the source of truth that survives restarts.

A record holds the spec, what the backend needs to find the job again (SageMaker name, local folder), the last
status seen (for fast listing) and what was pulled. Ids come from the client token, so submitting the same form
twice (a double click, a retried REST call) finds the first job instead of making a second one.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .spec import JobSpec

TERMINAL = ("Completed", "Failed", "Stopped")
ACTIVE = ("Created", "Queued", "Starting", "Downloading", "Training", "Uploading", "Stopping", "InProgress",
          "Interrupted", "Pending")


@dataclass
class JobRecord:
    spec: JobSpec
    status: str = "Created"  # last status seen: Created/Queued/Starting/Training/.../Completed/Failed/Stopped
    secondary_status: str = ""
    step: int = 0
    total_steps: int = 0
    started: float = 0.0  # epoch seconds; 0 = not yet
    ended: float = 0.0
    billable_s: int = 0
    training_s: int = 0
    failure: str = ""  # the raw failure reason
    sagemaker_name: str = ""
    local_dir: str = ""
    output_uri: str = ""  # SageMaker: the model.tar.gz
    model_file: str = ""  # the model manifest's checkpoint key
    triggers: list = field(default_factory=list)
    images_per_epoch: int = 0
    pulled: list = field(default_factory=list)  # [{"file": path, "renamed": bool, "at": time}]
    auto_pull: bool = True
    updated: float = 0.0

    @property
    def id(self) -> str:
        return self.spec.job_id

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "JobRecord":
        data = json.loads(text)
        spec = JobSpec.from_dict(data.pop("spec"))
        names = {f.name for f in fields(cls)}
        return cls(spec=spec, **{k: v for k, v in data.items() if k in names})


def job_id_for(lora_name: str, client_token: str) -> str:
    """A valid SageMaker job name (^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$), stable for one client token."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", lora_name).strip("-").lower()[:40].strip("-") or "lora"
    digest = hashlib.sha256(client_token.encode()).hexdigest()[:10]
    return f"cl-{slug}-{digest}"


def key(job_id: str, name: str = "job.json") -> str:
    return f"jobs/{job_id}/{name}"


def save(store, record: JobRecord) -> None:
    record.updated = time.time()
    store.put_bytes(key(record.id), record.to_json().encode("utf-8"), metadata={"cloudlora-kind": "job"})


def load(store, job_id: str) -> JobRecord | None:
    try:
        return JobRecord.from_json(store.get_bytes(key(job_id)))
    except FileNotFoundError:
        return None
    except Exception as err:  # S3: NoSuchKey comes as a ClientError unless the store maps it
        if "NoSuchKey" in str(err) or "404" in str(err) or "Not Found" in str(err):
            return None
        raise


def list_ids(store) -> list[str]:
    """Ids of every job record, newest first by id order is not meaningful: sort by the records' created time."""
    root = getattr(store, "root", None)
    if getattr(store, "kind", "") == "local" and root is not None:
        # Walking a local store's jobs/ would descend into every job's inputs and outputs.
        jobs = Path(root) / "jobs"
        return sorted(p.parent.name for p in jobs.glob("*/job.json")) if jobs.is_dir() else []
    ids = []
    for info in store.list("jobs/"):
        parts = info.key.split("/")
        if len(parts) == 3 and parts[2] == "job.json":
            ids.append(parts[1])
    return sorted(ids)


def list_records(store) -> list[JobRecord]:
    out = []
    for job_id in list_ids(store):
        try:
            rec = load(store, job_id)
        except (ValueError, KeyError, TypeError):
            continue  # a damaged record must not hide the others
        if rec is not None:
            out.append(rec)
    out.sort(key=lambda r: r.spec.created, reverse=True)
    return out


def delete(store, job_id: str) -> int:
    """Deletes the record and everything the store holds under jobs/<id>/ (outputs, logs)."""
    return store.delete_prefix(f"jobs/{job_id}/")


def lock(name: str, *, timeout: float = 120.0):
    """A machine-wide lock (fcntl) so two processes (the tab and the CLI) don't create or pull the same job twice."""
    from .. import locks

    return locks.hold(name, timeout=timeout)
