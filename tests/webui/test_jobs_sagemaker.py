"""The SageMaker backend: the request sent to moto's SageMaker (checked against botocore's service model), and the
job's life through status sequences driven by botocore's Stubber (moto completes jobs at once and cannot stop)."""
from __future__ import annotations

import datetime as dt
import re

import boto3
import botocore.session
import pytest
from botocore.stub import ANY, Stubber
from botocore.validate import ParamValidator

from cloudlora.errors import UserError
from cloudlora.jobs import records, service
from cloudlora.jobs.sagemaker_backend import backend as sagemaker_backend
from cloudlora.jobs.sagemaker_backend import sagemaker
from cloudlora.jobs.spec import JobSpec
from cloudlora.store import LocalStore

ROLE = "arn:aws:iam::123456789012:role/cloudlora-sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cloudlora-trainer:latest"
STEP_LINE = "step=120/1000 loss=0.0831 lr=0.0001 it/s=3.2"


@pytest.fixture
def sagemaker_user(aws_env, monkeypatch, tiny_sd15, sample_dataset):
    """A user with a bucket, role and image set up, and the tiny model and sample dataset uploaded to S3 (moto)."""
    from cloudlora import settings
    from cloudlora.assets.datasets import upload_dataset
    from cloudlora.assets.models import upload_model
    from cloudlora.store import open_store

    boto3.client("s3", region_name=aws_env.region).create_bucket(Bucket="cloudlora-store")
    monkeypatch.setenv("CLOUDLORA_BUCKET", "cloudlora-store")
    monkeypatch.setenv("CLOUDLORA_ROLE_ARN", ROLE)
    monkeypatch.setenv("CLOUDLORA_IMAGE_URI", IMAGE)
    s = settings.resolve()
    store = open_store(s)
    upload_model(store, tiny_sd15, name="tiny-sd15")
    upload_dataset(store, sample_dataset, name="demo")
    return s


def _capture_create(monkeypatch) -> list[dict]:
    """Records the parameters of every create_training_job the backend sends (to moto, unchanged)."""
    sent: list[dict] = []
    real = sagemaker._client

    def client(settings, service_name="sagemaker"):
        c = real(settings, service_name)
        if service_name == "sagemaker":
            c.meta.events.register("provide-client-params.sagemaker.CreateTrainingJob",
                                   lambda params, **_: sent.append(params))
        return c

    monkeypatch.setattr(sagemaker, "_client", client)
    return sent


def _spec(**kw) -> JobSpec:
    base = dict(model="tiny-sd15", dataset="demo", family="sd15", config=service.default_config("sd15"),
                lora_name="demo_lora", backend="sagemaker", instance_type="ml.g5.2xlarge", spot=True,
                max_wait_s=7200, max_runtime_s=3600, client_token="t1")
    base.update(kw)
    return JobSpec(**base)


def test_the_training_job_request_carries_spot_checkpoints_tensorboard_metrics_tags_and_channels(
        sagemaker_user, monkeypatch):
    sent = _capture_create(monkeypatch)
    job = service.create_job(_spec(), sagemaker_user)
    assert job["created"] and len(sent) == 1
    req = sent[0]
    model = botocore.session.get_session().get_service_model("sagemaker")
    report = ParamValidator().validate(req, model.operation_model("CreateTrainingJob").input_shape)
    assert not report.has_errors(), report.generate_report()
    sagemaker.validate_request(req)  # max lengths, enums and patterns, which botocore leaves to the server

    assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", req["TrainingJobName"])
    assert req["EnableManagedSpotTraining"] is True
    stop = req["StoppingCondition"]
    assert stop == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    base = f"s3://cloudlora-store/jobs/{job['id']}"
    # checkpoints live under scratch/, which the stack's lifecycle rule expires
    assert req["CheckpointConfig"] == {"S3Uri": f"s3://cloudlora-store/scratch/{job['id']}/checkpoints/",
                                       "LocalPath": "/opt/ml/checkpoints"}
    assert req["TensorBoardOutputConfig"]["LocalPath"] == "/opt/ml/output/tensorboard"
    assert req["OutputDataConfig"]["S3OutputPath"] == f"{base}/output/"
    definitions = req["AlgorithmSpecification"]["MetricDefinitions"]
    metrics = {m["Name"]: re.search(m["Regex"], STEP_LINE).group(1) for m in definitions
               if not m["Name"].startswith("validation:")}
    assert metrics == {"train:loss": "0.0831", "train:step": "120", "train:lr": "0.0001", "train:it_per_s": "3.2"}
    validation_line = "validation step=40 epoch=2 loss=0.1184"
    assert [(m["Name"], re.search(m["Regex"], validation_line).group(1)) for m in definitions
            if re.search(m["Regex"], validation_line)] == [("validation:loss", "0.1184")]
    assert {"Key": "cloudlora", "Value": "training-job"} in req["Tags"]
    assert all(isinstance(v, str) and len(v) < 2500 for v in req["HyperParameters"].values())
    channels = {c["ChannelName"]: c for c in req["InputDataConfig"]}
    assert set(channels) == {"model", "dataset", "config"}
    assert channels["model"]["InputMode"] == "FastFile"
    s3 = boto3.client("s3")
    for name, channel in channels.items():  # every channel points at objects that are really there
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
        bucket, prefix = sagemaker.parse_s3_uri(uri)
        assert s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0) >= 1, name
    config = s3.get_object(Bucket="cloudlora-store", Key=f"jobs/{job['id']}/config/config.toml")["Body"].read()
    assert config.decode() == service.default_config("sd15")

    # moto accepted it: our listing and the record find it again, and a second submit makes no second job.
    assert [j["TrainingJobName"] for j in sagemaker.list_ours(sagemaker_user)] == [job["id"]]
    again = service.create_job(_spec(), sagemaker_user)
    assert again["id"] == job["id"] and again["created"] is False and len(sent) == 1
    listed = service.list_jobs(sagemaker_user, auto_pull=False)
    assert [(j["id"], j["instance_type"], j["spot"]) for j in listed] == [(job["id"], "ml.g5.2xlarge", True)]


def test_the_kohya_sample_container_gets_one_train_channel_with_the_toml_beside_the_dataset(
        sagemaker_user, monkeypatch):
    sent = _capture_create(monkeypatch)
    job = service.create_job(_spec(container="kohya-sample", client_token="t2"), sagemaker_user)
    req = sent[0]
    assert {c["ChannelName"] for c in req["InputDataConfig"]} == {"train", "model"}
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(
        Bucket="cloudlora-store", Prefix=f"jobs/{job['id']}/train/")["Contents"]]
    rel = {k.split("/train/", 1)[1] for k in keys}
    assert "kohya-sd15-config.toml" in rel and any(re.match(r"\d+_cldemo/.+\.png$", r) for r in rel)
    toml = boto3.client("s3").get_object(Bucket="cloudlora-store",
                                         Key=f"jobs/{job['id']}/train/kohya-sd15-config.toml")["Body"].read().decode()
    assert 'output_name = "custom_lora_model"' in toml and 'train_data_dir = "/opt/ml/input/data/train"' in toml


def test_a_request_with_an_unknown_instance_type_is_refused_before_it_is_sent(sagemaker_user, monkeypatch):
    sent = _capture_create(monkeypatch)
    with pytest.raises(UserError, match="InstanceType"):
        service.create_job(_spec(instance_type="ml.g5.huge", client_token="t3"), sagemaker_user)
    assert sent == [] and service.list_jobs(sagemaker_user) == []


def test_spot_needs_a_max_wait_at_least_the_max_runtime(sagemaker_user):
    with pytest.raises(UserError, match="max wait"):
        service.create_job(_spec(max_wait_s=60, max_runtime_s=3600, client_token="t4"), sagemaker_user)


# --- state sequences with Stubber ---------------------------------------------------------------------------------

@pytest.fixture
def stubbed(tmp_path, monkeypatch, aws_env):
    """A SageMaker job record in a local store, and stubbed SageMaker + CloudWatch Logs clients."""
    from cloudlora import settings

    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    monkeypatch.setattr(sagemaker_backend, "log_cache", {})
    s = settings.resolve()
    store = LocalStore(tmp_path / "store")
    spec = _spec(job_id="cl-demo-lora-0000000001", created="2026-01-01T00:00:00Z")
    records.save(store, records.JobRecord(spec=spec, status="Starting", sagemaker_name=spec.job_id,
                                          total_steps=1000, triggers=["cldemo"]))
    sm = boto3.client("sagemaker", region_name="us-east-1")
    logs = boto3.client("logs", region_name="us-east-1")
    sm_stub, logs_stub = Stubber(sm), Stubber(logs)
    monkeypatch.setattr(sagemaker, "_client", lambda settings, name="sagemaker": sm if name == "sagemaker" else logs)
    with sm_stub, logs_stub:
        yield s, spec.job_id, sm_stub, logs_stub


def _describe(name, status, secondary, **extra):
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    body = {"TrainingJobName": name, "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
            "TrainingJobStatus": status, "SecondaryStatus": secondary, "CreationTime": t0,
            "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
            "ResourceConfig": {"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200},
            "EnableManagedSpotTraining": True, "TrainingStartTime": t0, "ModelArtifacts": {"S3ModelArtifacts": ""},
            "SecondaryStatusTransitions": [{"Status": secondary, "StartTime": t0, "StatusMessage": ""}]}
    body.update(extra)
    return body


def _round(sm_stub, logs_stub, name, describe, lines, *, first: bool):
    """One get_job: describe, then the log stream read from the last token until an empty page."""
    sm_stub.add_response("describe_training_job", describe, {"TrainingJobName": name})
    logs_stub.add_response("describe_log_streams", {"logStreams": [{"logStreamName": f"{name}/algo-1-1"}]},
                           {"logGroupName": sagemaker.LOG_GROUP, "logStreamNamePrefix": f"{name}/"})
    stream = {"logGroupName": sagemaker.LOG_GROUP, "logStreamName": f"{name}/algo-1-1", "startFromHead": True}
    token = f"f/{_round.page}"
    events = [{"timestamp": 1, "message": line, "ingestionTime": 1} for line in lines]
    logs_stub.add_response("get_log_events", {"events": events, "nextForwardToken": token},
                           stream if first else {**stream, "nextToken": ANY})
    if events:
        logs_stub.add_response("get_log_events", {"events": [], "nextForwardToken": token},
                               {**stream, "nextToken": token})
    _round.page += 1


def test_a_spot_job_is_followed_through_an_interruption_to_completion_with_its_cost(stubbed):
    settings, name, sm_stub, logs_stub = stubbed
    _round.page = 0
    seen = []
    sequence = [
        (_describe(name, "InProgress", "Starting"), []),
        (_describe(name, "InProgress", "Training"), ["step=100/1000 loss=0.2 lr=0.0001 it/s=2"]),
        (_describe(name, "InProgress", "Interrupted"), []),
        (_describe(name, "InProgress", "Training"), ["resumed from step 100", "step=600/1000 loss=0.1 lr=0.0001"]),
        (_describe(name, "Completed", "Completed", BillableTimeInSeconds=600, TrainingTimeInSeconds=1800,
                   TrainingEndTime=dt.datetime(2026, 1, 1, 0, 30, tzinfo=dt.timezone.utc),
                   ModelArtifacts={"S3ModelArtifacts": f"s3://cloudlora-store/jobs/{name}/output/{name}/output/model.tar.gz"}),
         ["step=1000/1000 loss=0.05 lr=0"]),
    ]
    for i, (describe, lines) in enumerate(sequence):
        _round(sm_stub, logs_stub, name, describe, lines, first=i == 0)
        job = service.get_job(name, settings, auto_pull=False)
        seen.append((job["status"], job["step"], job["secondary_status"]))
    assert [s[:2] for s in seen] == [("Starting", 0), ("Training", 100), ("Interrupted", 100), ("Training", 600),
                                     ("Completed", 1000)]
    assert "resume from the last checkpoint" in seen[2][2]
    assert job["cost_usd"] == pytest.approx(600 / 3600 * 1.52, abs=1e-3)
    assert job["spot_savings"] == pytest.approx(2 / 3, abs=1e-3)
    assert job["elapsed_s"] == 1800
    assert "step=1000/1000 loss=0.05 lr=0" in job["log_tail"]
    sm_stub.assert_no_pending_responses()


FAILURES = {
    "quota": ("ResourceLimitExceeded: The account-level service limit 'ml.g5.2xlarge for spot training job usage' is "
              "0 Instances, with current utilization of 0 Instances and a request delta of 1 Instances.",
              "no (or not enough) quota", "Service Quotas"),
    "image": (f"ClientError: Requested image {IMAGE} not found.", "could not be pulled from ECR", "cloudlora setup"),
    "passrole": ("AccessDeniedException: User: arn:aws:iam::123456789012:user/me is not authorized to perform: "
                 f"iam:PassRole on resource: {ROLE}", "not allowed to pass", "iam:PassRole"),
    "oom": ("AlgorithmError: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB, exit code: 3",
            "ran out of memory", "train_batch_size"),
    "config": ("AlgorithmError: The training config has problems:\n- unknown key 'lerning_rate' (did you mean "
               "'learning_rate'?)", "config was rejected", "Format config Params"),
    "dataset": ('ClientError: No S3 objects found under S3 URL "s3://cloudlora-store/datasets/demo/" given in input '
                "data source.", "dataset (or the model) was not found", "cloudlora dataset list"),
}


@pytest.mark.parametrize("cause", sorted(FAILURES))
def test_a_failed_job_says_why_in_plain_words_with_the_fix(stubbed, cause):
    settings, name, sm_stub, logs_stub = stubbed
    reason, words, fix = FAILURES[cause]
    sm_stub.add_response("describe_training_job", _describe(name, "Failed", "Failed", FailureReason=reason),
                         {"TrainingJobName": name})
    logs_stub.add_client_error("describe_log_streams", "ResourceNotFoundException", "no log group")
    job = service.get_job(name, settings)
    assert job["status"] == "Failed"
    assert job["explanation"]["cause"] == cause
    assert words in job["explanation"]["message"] and fix in job["explanation"]["fix"]
    assert job["failure"] == reason


def test_an_unknown_failure_shows_the_raw_reason(stubbed):
    settings, name, sm_stub, logs_stub = stubbed
    sm_stub.add_response("describe_training_job", _describe(name, "Failed", "Failed", FailureReason="Something new"),
                         {"TrainingJobName": name})
    logs_stub.add_client_error("describe_log_streams", "ResourceNotFoundException", "no log group")
    assert service.get_job(name, settings)["explanation"] == {"cause": "unknown", "message": "Something new",
                                                               "fix": "", "raw": "Something new"}


def test_stop_sends_stop_training_job_and_the_job_reads_stopping(stubbed):
    settings, name, sm_stub, logs_stub = stubbed
    sm_stub.add_response("describe_training_job", _describe(name, "InProgress", "Training"), {"TrainingJobName": name})
    sm_stub.add_response("stop_training_job", {}, {"TrainingJobName": name})
    sm_stub.add_response("describe_training_job", _describe(name, "Stopping", "Stopping"), {"TrainingJobName": name})
    out = service.stop_job(name, settings)
    assert out["status"] == "Stopping" and "checkpoint" in out["message"]
    sm_stub.assert_no_pending_responses()


def test_create_refused_for_passrole_says_what_to_grant(sagemaker_user, monkeypatch):
    sm = boto3.client("sagemaker", region_name="us-east-1")
    stub = Stubber(sm)
    stub.add_client_error("create_training_job", "AccessDeniedException",
                          f"User: arn:aws:iam::123456789012:user/me is not authorized to perform: iam:PassRole on "
                          f"resource: {ROLE}", http_status_code=400)
    real = sagemaker._client
    monkeypatch.setattr(sagemaker, "_client", lambda s, name="sagemaker": sm if name == "sagemaker" else real(s, name))
    with stub, pytest.raises(UserError) as err:
        service.create_job(_spec(client_token="t5"), sagemaker_user)
    assert "iam:PassRole" in err.value.fix and "not allowed to pass" in err.value.message
    assert service.list_jobs(sagemaker_user) == [], "a refused job leaves no record"


def test_a_completed_kohya_sample_job_is_pulled_from_model_tar_gz_under_the_lora_name(
        sagemaker_user, monkeypatch, tmp_path):
    import io
    import json
    import struct
    import tarfile

    from PIL import Image

    from cloudlora.library.pull import read_metadata

    lora_dir = tmp_path / "Lora"
    monkeypatch.setenv("CLOUDLORA_LORA_DIR", str(lora_dir))
    s = type(sagemaker_user)(**{**sagemaker_user.public(), "lora_dir": str(lora_dir)})
    job = service.create_job(_spec(container="kohya-sample", client_token="t6", lora_name="face"), s)
    # moto completes the job at once; put what the sample container would have left in /opt/ml/model.
    header = json.dumps({"__metadata__": {"ss_output_name": "custom_lora_model", "ss_base_model_version": "sd_v1"},
                         "lora_unet_x.alpha": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}).encode()
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 10)).save(png, "PNG")
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w:gz") as tar:
        for name, data in [("custom_lora_model.safetensors", struct.pack("<Q", len(header)) + header + b"\0" * 4),
                           ("sample/face_0.png", png.getvalue())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    uri = sagemaker.describe(s, job["id"])["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, key = sagemaker.parse_s3_uri(uri)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=tar_bytes.getvalue())

    listed = service.list_jobs(s)  # sees it Completed: pulls it
    assert listed[0]["status"] == "Completed"
    assert listed[0]["pulled"] == [str(lora_dir / "face.safetensors")]
    assert read_metadata(lora_dir / "face.safetensors")["ss_output_name"] == "face"
    sidecar = json.loads((lora_dir / "face.json").read_text())
    assert sidecar["sd version"] == "SD1" and sidecar["activation text"] == "cldemo"
    assert (lora_dir / "face.preview.png").read_bytes() == png.getvalue()
