"""The SageMaker backend, with plain boto3: create, describe, list, stop, logs, status and cost of training jobs.

The request follows the trainer's container contract (REFERENCE.md §3): channels model/dataset/config as S3
prefixes (the model streamed with FastFile), the config in S3, small string hyperparameters, spot with a
checkpoint location so an interruption resumes, TensorBoard synced to S3 while it runs, metric definitions parsed
from the trainer's `step=X/Y loss=L lr=R` lines, and tags marking our jobs. botocore checks types and minimum
lengths only, so validate_request() checks maximum lengths, enums and patterns against botocore's own service
model before anything is sent.

"Kohya sample container" mode follows that sample's contract instead: one `train` channel holding the Kohya TOML
and the <repeats>_<name> folder; the LoRA comes out as /opt/ml/model/custom_lora_model.safetensors.
"""
from __future__ import annotations

import re
import time
from typing import Iterator

from ..aws.stack import SCRATCH_PREFIX
from ..errors import UserError
from ..settings import Settings
from . import instances
from .spec import JobSpec

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TAG_KEY = "cloudlora"
NAME_PREFIX = "cl-"
KOHYA_SAMPLE_OUTPUT = "custom_lora_model"
METRICS = [
    {"Name": "train:loss", "Regex": r"step=\d+/\d+ loss=([-+0-9.eE]+|nan)"},
    {"Name": "train:step", "Regex": r"step=(\d+)/\d+"},
    {"Name": "train:lr", "Regex": r"\blr=([-+0-9.eE]+)"},
    {"Name": "train:it_per_s", "Regex": r"it/s=([0-9.]+)"},
    # the trainer's validation line (validation_split): `validation step=40 epoch=2 loss=0.1184`
    {"Name": "validation:loss", "Regex": r"validation step=\d+(?: epoch=\d+)? loss=([-+0-9.eE]+|nan)"},
]
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
    from ..aws.session import client

    return client(settings, service)


def _aws_errors(settings: Settings, what: str):
    from ..aws.session import aws_errors

    return aws_errors(settings, service="sagemaker", what=what)


def prefix_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def config_key(job_id: str, spec: JobSpec) -> str:
    if spec.container == "kohya-sample":
        return f"jobs/{job_id}/train/kohya-{spec.family}-config.toml"
    return f"jobs/{job_id}/config/config.toml"


def kohya_sample_config(config_text: str, model_file: str) -> str:
    """The user's TOML with the paths the sample container expects (train channel, model channel, output)."""
    try:
        from cloudlora_backend.trainer.config import set_keys
    except ImportError:  # pragma: no cover - the trainer's config module ships with the extension
        raise
    return set_keys(config_text, {
        "pretrained_model_name_or_path": f"/opt/ml/input/data/model/{model_file}",
        "train_data_dir": "/opt/ml/input/data/train",
        "output_dir": "/opt/ml/model",
        "output_name": KOHYA_SAMPLE_OUTPUT,
        "save_model_as": "safetensors",
    })


def build_request(spec: JobSpec, *, bucket: str, role_arn: str, model_key: str, dataset_name: str,
                  part_keys: dict[str, str] | None = None, training_job_name: str = "",
                  hyperparameters: dict | None = None, network_key: str = "") -> dict:
    """The create_training_job request (pure: no AWS calls). part_keys: FLUX.1's clip_l / t5xxl / ae files, each
    streamed as its own channel. `training_job_name` names a resumed run of the job: a new SageMaker job with the
    same config, outputs and checkpoint location (so it starts from the checkpoint). hyperparameters: extra string
    values for our trainer (model_sha256, network_weights); network_key: the LoRA to continue from, as the
    `network` channel."""
    extra_hp = {k: str(v) for k, v in (hyperparameters or {}).items()}
    job = spec.job_id
    base = f"jobs/{job}"
    model_channel = {
        "ChannelName": "model",
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": prefix_uri(bucket, model_key),
                                        "S3DataDistributionType": "FullyReplicated"}},
        "InputMode": "FastFile",  # streamed: a 7 GB SDXL checkpoint starts training without a full copy first
    }
    if spec.container == "kohya-sample":
        channels = [
            {"ChannelName": "train",
             "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": prefix_uri(bucket, f"{base}/train/"),
                                             "S3DataDistributionType": "FullyReplicated"}},
             "InputMode": "File"},
            {**model_channel, "InputMode": "File"},
        ]
        hyperparameters = {}
    else:
        channels = [
            model_channel,
            {"ChannelName": "dataset",
             "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                             "S3Uri": prefix_uri(bucket, f"datasets/{dataset_name}/"),
                                             "S3DataDistributionType": "FullyReplicated"}},
             "InputMode": "File"},  # many small files: a plain copy is fastest
            {"ChannelName": "config",
             "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": prefix_uri(bucket, f"{base}/config/"),
                                             "S3DataDistributionType": "FullyReplicated"}},
             "InputMode": "File"},
        ]
        channels += [{**model_channel, "ChannelName": part,
                      "DataSource": {"S3DataSource": {**model_channel["DataSource"]["S3DataSource"],
                                                      "S3Uri": prefix_uri(bucket, key)}}}
                     for part, key in sorted((part_keys or {}).items())]
        hyperparameters = {**extra_hp, "output_name": spec.lora_name, "family": spec.family, "config": "config.toml",
                           "job_id": job}
        if network_key:
            channels.append({"ChannelName": "network",
                             "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                             "S3Uri": prefix_uri(bucket, network_key),
                                                             "S3DataDistributionType": "FullyReplicated"}},
                             "InputMode": "File"})
    request = {
        "TrainingJobName": training_job_name or job,
        "AlgorithmSpecification": {
            "TrainingImage": spec.image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": METRICS,
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "RoleArn": role_arn,
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": prefix_uri(bucket, f"{base}/output/")},
        "ResourceConfig": {"InstanceType": spec.instance_type, "InstanceCount": 1, "VolumeSizeInGB": 50},
        "StoppingCondition": {"MaxRuntimeInSeconds": int(spec.max_runtime_s)},
        # Under scratch/: the stack's lifecycle rule expires it (S3 rules match prefixes only).
        "CheckpointConfig": {"S3Uri": prefix_uri(bucket, checkpoint_prefix(job)),
                             "LocalPath": "/opt/ml/checkpoints"},
        "TensorBoardOutputConfig": {"S3OutputPath": prefix_uri(bucket, f"{base}/tensorboard/"),
                                    "LocalPath": "/opt/ml/output/tensorboard"},
        "Tags": [
            {"Key": TAG_KEY, "Value": "training-job"},
            {"Key": "cloudlora:lora-name", "Value": spec.lora_name[:256]},
            {"Key": "cloudlora:model", "Value": spec.model[:256]},
            {"Key": "cloudlora:dataset", "Value": spec.dataset[:256]},
        ],
    }
    if hyperparameters:
        request["HyperParameters"] = hyperparameters
    if spec.container != "kohya-sample":
        # Our trainer needs no network: the model, dataset and config come through the channels, the image holds the
        # tokenizers (HF_HUB_OFFLINE=1), and SageMaker itself moves outputs, checkpoints, TensorBoard events and logs.
        # Isolated, a job that a malicious input file subverted has no network and no AWS credentials. The Kohya
        # sample container fetches tokenizers from the Hugging Face hub at start, so it keeps the network.
        request["EnableNetworkIsolation"] = True
    if spec.spot:
        request["EnableManagedSpotTraining"] = True
        request["StoppingCondition"]["MaxWaitTimeInSeconds"] = int(spec.max_wait_s)
    if spec.warm_pool_s:
        request["ResourceConfig"]["KeepAlivePeriodInSeconds"] = int(spec.warm_pool_s)
    return request


# --- validation against botocore's service model ----------------------------------------------------------------

def validate_request(request: dict) -> None:
    """Maximum lengths, enums, ranges and patterns that botocore does not check client-side."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("CreateTrainingJob").input_shape
    problems: list[str] = []
    _walk(shape, request, "CreateTrainingJob", problems)
    if problems:
        raise UserError("The training job request is not valid:\n- " + "\n- ".join(problems),
                        "Fix the values named above (names, lengths, instance type).")


def _walk(shape, value, path: str, problems: list[str]) -> None:
    t = shape.type_name
    meta = shape.metadata
    if t == "structure":
        if not isinstance(value, dict):
            return
        for name, sub in value.items():
            if name in shape.members:
                _walk(shape.members[name], sub, f"{path}.{name}", problems)
            else:
                problems.append(f"{path}: unknown field {name}")
    elif t == "list":
        if isinstance(value, list):
            if "max" in meta and len(value) > meta["max"]:
                problems.append(f"{path}: at most {meta['max']} entries, not {len(value)}")
            for i, item in enumerate(value):
                _walk(shape.member, item, f"{path}[{i}]", problems)
    elif t == "map":
        if isinstance(value, dict):
            if "max" in meta and len(value) > meta["max"]:
                problems.append(f"{path}: at most {meta['max']} entries, not {len(value)}")
            for k, v in value.items():
                _walk(shape.key, k, f"{path} key {k!r}", problems)
                _walk(shape.value, v, f"{path}[{k!r}]", problems)
    elif t == "string":
        if not isinstance(value, str):
            problems.append(f"{path}: must be a string, not {type(value).__name__}")
            return
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: at most {meta['max']} characters, not {len(value)}")
        if "min" in meta and len(value) < meta["min"]:
            problems.append(f"{path}: at least {meta['min']} characters")
        enum = getattr(shape, "enum", None)
        if enum and value not in enum:
            problems.append(f"{path}: {value!r} is not one of the allowed values")
        pattern = meta.get("pattern")
        if pattern:
            try:
                if not re.fullmatch(pattern, value, flags=re.DOTALL):
                    problems.append(f"{path}: {value!r} does not match {pattern}")
            except re.error:
                pass  # a Java-only construct: AWS checks it server-side
    elif t in ("integer", "long"):
        if isinstance(value, int):
            if "max" in meta and value > meta["max"]:
                problems.append(f"{path}: at most {meta['max']}, not {value}")
            if "min" in meta and value < meta["min"]:
                problems.append(f"{path}: at least {meta['min']}, not {value}")


# --- AWS calls ------------------------------------------------------------------------------------------------------

def create(settings: Settings, spec: JobSpec, *, model_key: str, dataset_name: str, store,
           part_keys: dict[str, str] | None = None, hyperparameters: dict | None = None,
           network_key: str = "") -> dict:
    """Uploads the config, validates and sends create_training_job; returns the request sent."""
    bucket = settings.bucket
    cfg_key = config_key(spec.job_id, spec)
    text = spec.config
    if spec.container == "kohya-sample":
        text = kohya_sample_config(spec.config, model_key.rsplit("/", 1)[-1])
        _copy_dataset(settings, bucket, f"datasets/{dataset_name}/", f"jobs/{spec.job_id}/train/")
    request = build_request(spec, bucket=bucket, role_arn=settings.role_arn, model_key=model_key,
                            dataset_name=dataset_name, part_keys=part_keys, hyperparameters=hyperparameters,
                            network_key=network_key)
    validate_request(request)
    store.put_bytes(cfg_key, text.encode("utf-8"))
    sm = _client(settings)
    import botocore.exceptions as bx

    from . import failures

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


def checkpoint_prefix(job_id: str) -> str:
    return f"{SCRATCH_PREFIX}{job_id}/checkpoints/"


def resume(settings: Settings, spec: JobSpec, *, attempt: int, model_key: str, store,
           part_keys: dict[str, str] | None = None, hyperparameters: dict | None = None,
           network_key: str = "") -> str:
    """Starts a new SageMaker job that continues a stopped or failed one: the same inputs and config, and the old
    job's checkpoint prefix as its CheckpointConfig, which SageMaker copies to /opt/ml/checkpoints before the
    trainer starts (the trainer then continues from checkpoints/state.pt). Returns the new job's name."""
    if spec.container == "kohya-sample":
        raise UserError("A job in the SageMaker Kohya sample container cannot be resumed: that container does not "
                        "read checkpoints.", "Create the job again (the cloudlora container resumes).")
    name = resume_name(spec.job_id, attempt)
    request = build_request(spec, bucket=settings.bucket, role_arn=settings.role_arn, model_key=model_key,
                            dataset_name=spec.dataset, part_keys=part_keys, training_job_name=name,
                            hyperparameters=hyperparameters, network_key=network_key)
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
