"""The SageMaker backend, with plain boto3: create, describe, list, stop, logs, status and cost of training jobs.

The request itself (channels, hyperparameters, spot, checkpoints, TensorBoard, tags) and its validation against
botocore's service model are built in sagemaker_request.py, without any AWS call.
"""
from __future__ import annotations

import re
import time
from typing import Iterator

from ...errors import UserError
from ...settings import Settings
from . import instances
from .sagemaker_request import (KOHYA_SAMPLE_OUTPUT, METRICS, TAG_KEY, build_request,  # noqa: F401 - re-exported
                                checkpoint_prefix, config_key, kohya_sample_config, prefix_uri, validate_request)
from ..spec import JobSpec

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
NAME_PREFIX = "cl-"
# What SecondaryStatus means, in words for the list.
SECONDARY_WORDS = {
    "Starting": "Starting the instance",
    "LaunchingMLInstances": "Launching the instance",
    "PreparingTrainingStack": "Preparing the instance",
    "Pending": "Waiting for capacity",
    "Downloading": "Downloading the model and dataset",
    "DownloadingTrainingImage": "Pulling the trainer image",
    "Training": "Training",
    "Uploading": "Uploading the LoRA",
    "Interrupted": "Spot instance reclaimed; will resume from the last checkpoint",
    "Restarting": "Restarting after an interruption",
    "MaxRuntimeExceeded": "Stopped: max runtime reached",
    "MaxWaitTimeExceeded": "Stopped: max wait (spot) reached",
    "Stopping": "Stopping",
    "Stopped": "Stopped",
    "Completed": "Completed",
    "Failed": "Failed",
}


def _client(settings: Settings, service: str = "sagemaker"):
    from ...aws.session import client

    return client(settings, service)


def _aws_errors(settings: Settings, what: str):
    from ...aws.session import aws_errors

    return aws_errors(settings, service="sagemaker", what=what)


# --- AWS calls ------------------------------------------------------------------------------------------------------

def create(settings: Settings, spec: JobSpec, *, model_key: str, dataset_name: str, store,
           part_keys: dict[str, str] | None = None, hyperparameters: dict | None = None,
           network_key: str = "", captioner_key: str = "") -> dict:
    """Uploads the config, validates and sends create_training_job; returns the request sent."""
    bucket = settings.bucket
    cfg_key = config_key(spec.job_id, spec)
    text = spec.config
    if spec.container == "kohya-sample":
        text = kohya_sample_config(spec.config, model_key.rsplit("/", 1)[-1])
        _copy_dataset(settings, bucket, f"datasets/{dataset_name}/", f"jobs/{spec.job_id}/train/")
    request = build_request(spec, bucket=bucket, role_arn=settings.role_arn, model_key=model_key,
                            dataset_name=dataset_name, part_keys=part_keys, hyperparameters=hyperparameters,
                            network_key=network_key, captioner_key=captioner_key)
    validate_request(request)
    store.put_bytes(cfg_key, text.encode("utf-8"))
    sm = _client(settings)
    import botocore.exceptions as bx

    from ..results import failures

    try:
        with _aws_errors(settings, "creating the training job"):
            sm.create_training_job(**request)
    except UserError as err:
        # The known refusals (no quota, PassRole denied, missing image) get their plain words and fix.
        cause = err.__cause__
        raw = str(cause) if isinstance(cause, bx.ClientError) else err.message
        exp = failures.explain(raw, instance_type=spec.instance_type)
        if exp and exp.cause in ("quota", "passrole", "image", "spot_capacity"):
            raise UserError(f"{exp.message} (AWS said: {raw})", exp.fix) from err
        raise
    return request


def resume_name(job_id: str, attempt: int) -> str:
    """The SageMaker name of the job's attempt-th resumed run: <id>-r<attempt> (job names are never reused)."""
    return f"{job_id}-r{attempt}"


def resume(settings: Settings, spec: JobSpec, *, attempt: int, model_key: str, store,
           part_keys: dict[str, str] | None = None, hyperparameters: dict | None = None,
           network_key: str = "", captioner_key: str = "") -> str:
    """Starts a new SageMaker job that continues a stopped or failed one: the same inputs and config, and the old
    job's checkpoint prefix as its CheckpointConfig, which SageMaker copies to /opt/ml/checkpoints before the
    trainer starts (the trainer then continues from checkpoints/state.pt). Returns the new job's name."""
    if spec.container == "kohya-sample":
        raise UserError("A job in the SageMaker Kohya sample container cannot be resumed: that container does not "
                        "read checkpoints.", "Create the job again (the cloudlora container resumes).")
    name = resume_name(spec.job_id, attempt)
    request = build_request(spec, bucket=settings.bucket, role_arn=settings.role_arn, model_key=model_key,
                            dataset_name=spec.dataset, part_keys=part_keys, training_job_name=name,
                            hyperparameters=hyperparameters, network_key=network_key, captioner_key=captioner_key)
    validate_request(request)
    store.put_bytes(config_key(spec.job_id, spec), spec.config.encode("utf-8"))  # the channel reads it again
    with _aws_errors(settings, f"resuming training job {spec.job_id} as {name}"):
        _client(settings).create_training_job(**request)
    return name


def _copy_dataset(settings: Settings, bucket: str, src_prefix: str, dest_prefix: str) -> None:
    """Server-side copy of the dataset beside the config (the Kohya sample reads both from one channel)."""
    s3 = _client(settings, "s3")
    with _aws_errors(settings, "copying the dataset for the Kohya sample container"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=src_prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(src_prefix):]
                if rel and rel != "manifest.json" and not rel.endswith(".meta.json"):
                    s3.copy_object(Bucket=bucket, Key=dest_prefix + rel,
                                   CopySource={"Bucket": bucket, "Key": obj["Key"]})


def describe(settings: Settings, name: str, client=None) -> dict:
    sm = client or _client(settings)
    with _aws_errors(settings, f"reading training job {name}"):
        return sm.describe_training_job(TrainingJobName=name)


def list_ours(settings: Settings, client=None) -> list[dict]:
    """Every training job of ours (name prefix; records hold the rest), newest first, all pages."""
    sm = client or _client(settings)
    out = []
    with _aws_errors(settings, "listing training jobs"):
        for page in sm.get_paginator("list_training_jobs").paginate(NameContains=NAME_PREFIX,
                                                                     SortBy="CreationTime", SortOrder="Descending"):
            out += [j for j in page.get("TrainingJobSummaries", []) if j["TrainingJobName"].startswith(NAME_PREFIX)]
    return out


def stop(settings: Settings, name: str, client=None) -> str:
    sm = client or _client(settings)
    with _aws_errors(settings, f"stopping training job {name}"):
        sm.stop_training_job(TrainingJobName=name)
    return "stopping (SageMaker sends SIGTERM; the trainer saves a checkpoint)"


def _ts(value) -> float:
    if value is None:
        return 0.0
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def status_from(desc: dict) -> dict:
    """Our status fields from describe_training_job's answer."""
    primary = desc.get("TrainingJobStatus", "")
    secondary = desc.get("SecondaryStatus", "")
    status = secondary if primary == "InProgress" and secondary else primary
    if status in ("LaunchingMLInstances", "PreparingTrainingStack", "DownloadingTrainingImage", "Pending"):
        status = "Starting" if status != "DownloadingTrainingImage" else "Downloading"
    if status == "Restarting":
        status = "Interrupted"
    transitions = desc.get("SecondaryStatusTransitions") or []
    message = transitions[-1].get("StatusMessage", "") if transitions else ""
    words = SECONDARY_WORDS.get(secondary, secondary)
    billable = int(desc.get("BillableTimeInSeconds") or 0)
    training = int(desc.get("TrainingTimeInSeconds") or 0)
    return {
        "status": status or "Created",
        "secondary_status": f"{words}: {message}" if message and message != words else words,
        "started": _ts(desc.get("TrainingStartTime")),
        "ended": _ts(desc.get("TrainingEndTime")),
        "billable_s": billable,
        "training_s": training,
        "failure": desc.get("FailureReason", "") or "",
        "output_uri": (desc.get("ModelArtifacts") or {}).get("S3ModelArtifacts", ""),
        "spot": bool(desc.get("EnableManagedSpotTraining")),
        "instance_type": (desc.get("ResourceConfig") or {}).get("InstanceType", ""),
        "transitions": [{"status": t.get("Status", ""), "message": t.get("StatusMessage", ""),
                         "start": _ts(t.get("StartTime"))} for t in transitions],
    }


def cost(instance_type: str, billable_s: int, training_s: int, spot: bool) -> dict:
    """{"cost_usd", "on_demand_usd", "spot_savings"}; None values when the price is unknown."""
    inst = instances.get(instance_type)
    price = inst.price_per_hour if inst else None
    out = {"cost_usd": None, "on_demand_usd": None, "spot_savings": None, "price_per_hour": price}
    if price is not None and billable_s:
        out["cost_usd"] = round(billable_s / 3600 * price, 4)
    if price is not None and training_s:
        out["on_demand_usd"] = round(training_s / 3600 * price, 4)
    if spot and training_s:
        out["spot_savings"] = round(1 - billable_s / training_s, 4)
    return out


def log_events(settings: Settings, name: str, tokens: dict | None = None, client=None,
               max_pages: int = 50) -> tuple[list[str], dict]:
    """New log lines of every stream of the job since `tokens` ({stream: nextForwardToken}); returns (lines, tokens).

    Stops on an empty page or a repeated token (CloudWatch returns the same token at the end of a stream).
    """
    logs = client or _client(settings, "logs")
    tokens = dict(tokens or {})
    lines: list[str] = []
    with _aws_errors(settings, f"reading the logs of {name}"):
        try:
            streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/")
        except logs.exceptions.ResourceNotFoundException:
            return [], tokens  # no log yet (the instance has not started)
        for stream in streams.get("logStreams", []):
            sname = stream["logStreamName"]
            for _ in range(max_pages):
                kwargs = {"logGroupName": LOG_GROUP, "logStreamName": sname, "startFromHead": True}
                if sname in tokens:
                    kwargs["nextToken"] = tokens[sname]
                page = logs.get_log_events(**kwargs)
                events = page.get("events", [])
                lines += [e.get("message", "") for e in events]
                new = page.get("nextForwardToken")
                if not events or not new or new == tokens.get(sname):
                    if new:
                        tokens[sname] = new
                    break
                tokens[sname] = new
    return lines, tokens


def follow(settings: Settings, name: str, interval: float = 10.0) -> Iterator[str]:
    """Yields log lines until the job ends (then the last lines)."""
    tokens: dict = {}
    while True:
        lines, tokens = log_events(settings, name, tokens)
        yield from lines
        st = status_from(describe(settings, name))
        if st["status"] in ("Completed", "Failed", "Stopped"):
            lines, tokens = log_events(settings, name, tokens)
            yield from lines
            return
        time.sleep(interval)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    m = re.match(r"^s3://([^/]+)/(.*)$", uri or "")
    if not m:
        raise UserError(f"'{uri}' is not an s3:// URI.", "This job has no output to pull.")
    return m.group(1), m.group(2)


def download_output(settings: Settings, uri: str, dest) -> None:
    bucket, key = parse_s3_uri(uri)
    s3 = _client(settings, "s3")
    with _aws_errors(settings, f"downloading {uri}"):
        s3.download_file(bucket, key, str(dest))
