"""The create_training_job request, pure (no AWS calls), and its validation before anything is sent.

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

from ...aws.stack import SCRATCH_PREFIX
from ...errors import UserError
from ..spec import JobSpec

TAG_KEY = "cloudlora"
KOHYA_SAMPLE_OUTPUT = "custom_lora_model"
METRICS = [
    {"Name": "train:loss", "Regex": r"step=\d+/\d+ loss=([-+0-9.eE]+|nan)"},
    {"Name": "train:step", "Regex": r"step=(\d+)/\d+"},
    {"Name": "train:lr", "Regex": r"\blr=([-+0-9.eE]+)"},
    {"Name": "train:it_per_s", "Regex": r"it/s=([0-9.]+)"},
    # the trainer's validation line (validation_split): `validation step=40 epoch=2 loss=0.1184`
    {"Name": "validation:loss", "Regex": r"validation step=\d+(?: epoch=\d+)? loss=([-+0-9.eE]+|nan)"},
]


def prefix_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def config_key(job_id: str, spec: JobSpec) -> str:
    if spec.container == "kohya-sample":
        return f"jobs/{job_id}/train/kohya-{spec.family}-config.toml"
    return f"jobs/{job_id}/config/config.toml"


def kohya_sample_config(config_text: str, model_file: str) -> str:
    """The user's TOML with the paths the sample container expects (train channel, model channel, output)."""
    try:
        from cloudlora_backend.trainer.config.train_config import set_keys
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
                  hyperparameters: dict | None = None, network_key: str = "", captioner_key: str = "") -> dict:
    """The create_training_job request (pure: no AWS calls). part_keys: FLUX.1's clip_l / t5xxl / ae files, each
    streamed as its own channel. `training_job_name` names a resumed run of the job: a new SageMaker job with the
    same config, outputs and checkpoint location (so it starts from the checkpoint). hyperparameters: extra string
    values for our trainer (model_sha256, network_weights); network_key: the LoRA to continue from, as the
    `network` channel; captioner_key: the captioner's files (caption = ... in the TOML), as the `captioner`
    channel."""
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
        # The LoRA to continue from, and the captioner (caption = ... in the TOML): small, copied whole.
        channels += [{"ChannelName": name,
                      "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": prefix_uri(bucket, key),
                                                      "S3DataDistributionType": "FullyReplicated"}},
                      "InputMode": "File"}
                     for name, key in (("network", network_key), ("captioner", captioner_key)) if key]
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


def checkpoint_prefix(job_id: str) -> str:
    return f"{SCRATCH_PREFIX}{job_id}/checkpoints/"
