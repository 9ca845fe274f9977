"""Job records in the store (jobs/<id>/job.json): with SageMaker, the source of truth that survives restarts.

A record holds the spec, what the backend needs to find the job again (SageMaker name, local folder), the last
status seen (for fast listing) and what was pulled.

The client token alone identifies a create request: tokens/<sha256 of the token>.json (claimed create-only, like a
name) names the job it made and the settings it was made with. The same token again finds that job (a double click,
a retried REST call); the same token with other settings is an error, never a second job nor a silent old one.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import UserError
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
    resumes: int = 0  # how often it was resumed; SageMaker: sagemaker_name is then <id>-r<resumes>
    earlier_billable_s: int = 0  # SageMaker: the billable/training time of the runs before the last resume
    earlier_training_s: int = 0
    captions_applied: str = ""  # a captioning job: the dataset version its captions made (jobs/job_captions.py)

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


JOB_ID_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def check_job_id(job_id: str) -> str:
    """A job id as this extension makes them (a SageMaker job name); anything else is a 400, never a path."""
    if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
        raise UserError(f"{job_id!r} is not a training job id (letters, digits and '-', up to 63 characters).",
                        "List the jobs with `cloudlora jobs` (or refresh the Trainings List) and use an id from there.")
    return job_id


def key(job_id: str, name: str = "job.json") -> str:
    return f"jobs/{check_job_id(job_id)}/{name}"


# --- the client token -----------------------------------------------------------------------------------------------

REQUEST_FIELDS = ("model", "dataset", "family", "lora_name", "backend", "instance_type", "spot", "max_wait_s",
                  "max_runtime_s", "container", "image_uri", "warm_pool_s")


class TokenReused(UserError):
    """A client token sent again with other settings than the job it made."""

    def __init__(self, job_id: str, differences: list[str]):
        self.job_id = job_id
        super().__init__(
            f"This client token already made job {job_id}, with other settings ({'; '.join(differences)}). A token "
            "names one request, so no second job was created.",
            f"Send a new client token (or none) to create another job; send the same settings to get {job_id} back.")


def token_key(client_token: str) -> str:
    return f"tokens/{hashlib.sha256(client_token.encode()).hexdigest()[:40]}.json"


def request_fields(spec: JobSpec) -> dict:
    """What a create request asked for (the normalised spec without its id, time and token); the config by hash."""
    data = {name: getattr(spec, name) for name in REQUEST_FIELDS}
    data["config_sha256"] = hashlib.sha256((spec.config or "").encode()).hexdigest()
    return data


def differences(old: dict, new: dict) -> list[str]:
    out = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            out.append("the config differs" if name == "config_sha256" else f"{name} {old.get(name)!r} → "
                       f"{new.get(name)!r}")
    return out


def save(store, record: JobRecord) -> None:
    record.updated = time.time()
    store.put_bytes(key(record.id), record.to_json().encode("utf-8"), metadata={"cloudlora-kind": "job"})


def save_keeping_pulls(store, record: JobRecord) -> None:
    """save, for a record read a while ago (a status refresh, a pull): what another request recorded in the stored
    record meanwhile stays, namely its pulls (the newest entry per file) and applied captions. Under Forge's queue two
    refreshes of one page run at once; without this, a refresh that had read the job while it trained dropped the
    other's pull, and the next refresh pulled the LoRA a second time as NAME-1."""
    with lock(f"record-{record.id}"):
        stored = load(store, record.id)
        if stored is not None:
            newest: dict = {}
            for entry in stored.pulled + record.pulled:
                old = newest.get(entry.get("file"))
                if old is None or entry.get("at", 0) >= old.get("at", 0):
                    newest[entry.get("file")] = entry
            record.pulled = sorted(newest.values(), key=lambda e: e.get("at", 0))
            record.captions_applied = record.captions_applied or stored.captions_applied
        save(store, record)


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
    """Every readable job record, newest first. A broken one (bad JSON, missing fields, numbers no JSON encoder can
    hold) is skipped and logged: one record must never hide the others or stop the Trainings List from loading."""
    import logging

    from ..assets.manifests import json_problem

    out = []
    for job_id in list_ids(store):
        try:
            raw = store.get_bytes(key(job_id))
            problem = json_problem(json.loads(raw))
            rec = None if problem else JobRecord.from_json(raw)
        except FileNotFoundError:
            continue
        except (ValueError, KeyError, TypeError, AttributeError, UserError) as err:  # UserError: a bad id
            problem = str(err) or type(err).__name__
        if problem:
            logging.getLogger(__name__).warning("cloudlora: skipped the broken job record %s: %s",
                                                store.uri(key(job_id)), problem)
            continue
        out.append(rec)
    out.sort(key=lambda r: str(r.spec.created), reverse=True)
    return out


def delete(store, job_id: str) -> int:
    """Deletes the record and everything the store holds under jobs/<id>/ (outputs, logs)."""
    return store.delete_prefix(f"jobs/{job_id}/")


def lock(name: str, *, timeout: float = 120.0):
    """A machine-wide lock (fcntl) so two processes (the tab and the CLI) don't create or pull the same job twice."""
    from .. import locks

    return locks.hold(name, timeout=timeout)
