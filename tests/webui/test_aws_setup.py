"""`cloudlora setup`: the stack through a change set on moto's CloudFormation (S3, IAM, ECR are real moto resources),
the image build through a stubbed CodeBuild (moto cannot run builds), and `setup --delete`.
"""
from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from cloudlora import settings
from cloudlora.aws import bundle, setup, stack
from cloudlora.cli import main as cli_main
from cloudlora.errors import UserError

# moto's CloudFormation skips the bucket policy and the CodeBuild project (and says so); the tests need neither.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS::")

BUCKET = "cloudlora-123456789012-us-east-1"
PROJECT = "cloudlora-trainer-build"


@pytest.fixture
def trainer_sources(tmp_path) -> Path:
    """A build context like the real one: the Dockerfile and what its COPY lines name."""
    root = tmp_path / "ext"
    (root / "cloud_backend" / "container").mkdir(parents=True)
    (root / "cloud_backend" / "trainer").mkdir(parents=True)
    (root / "tools").mkdir()
    (root / "cloud_backend" / "container" / "Dockerfile").write_text(
        "# build context: the repository root\nFROM base\n"
        "COPY cloud_backend/requirements-lock.txt /tmp/req.txt\n"
        "COPY --chown=1000 cloud_backend/ /opt/cloudlora/cloud_backend/\n"
        "COPY --from=builder /x /y\n")
    (root / "cloud_backend" / "requirements-lock.txt").write_text("diffusers>=0.35\n")
    (root / "cloud_backend" / "trainer" / "train.py").write_text("print('train')\n")
    (root / "cloud_backend" / "trainer" / "__pycache__").mkdir()
    (root / "cloud_backend" / "trainer" / "__pycache__" / "train.cpython-310.pyc").write_bytes(b"junk")
    (root / "unrelated.txt").write_text("not in the image")
    return root


def _build(status: str, phases: list[tuple[str, str]], **extra) -> dict:
    return {"builds": [{"id": f"{PROJECT}:1", "buildStatus": status,
                        "phases": [{"phaseType": t, "phaseStatus": s, **extra.get(t, {})} for t, s in phases],
                        "logs": {"groupName": f"/aws/codebuild/{PROJECT}", "streamName": "build-1"}}]}


def _codebuild(tag: str | None = None, final: str = "SUCCEEDED", failed_phase: dict | None = None) -> tuple:
    cb = boto3.client("codebuild", region_name="us-east-1")
    st = Stubber(cb)
    if tag is not None:
        st.add_response("start_build", {"build": {"id": f"{PROJECT}:1", "buildStatus": "IN_PROGRESS"}}, {
            "projectName": PROJECT, "sourceTypeOverride": "S3", "sourceLocationOverride": f"{BUCKET}/build/{tag}.zip",
            "environmentVariablesOverride": [{"name": "IMAGE_TAG", "value": tag, "type": "PLAINTEXT"}]})
        st.add_response("batch_get_builds", _build("IN_PROGRESS", [("SUBMITTED", "SUCCEEDED"), ("BUILD", "")]),
                        {"ids": [f"{PROJECT}:1"]})
        phases = [("SUBMITTED", "SUCCEEDED"), ("PRE_BUILD", "SUCCEEDED"), ("BUILD", "FAILED" if final == "FAILED"
                                                                          else "SUCCEEDED")]
        st.add_response("batch_get_builds", _build(final, phases, BUILD=failed_phase or {}), {"ids": [f"{PROJECT}:1"]})
    st.activate()
    return cb, st


def _push_image(tag: str) -> None:
    """What the real build's `docker push` leaves in ECR."""
    config = {"digest": "sha256:" + "2" * 64, "size": 1, "mediaType": "application/vnd.docker.container.image.v1+json"}
    manifest = json.dumps({"schemaVersion": 2, "config": config,
                           "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "layers": []})
    boto3.client("ecr").put_image(repositoryName="cloudlora-trainer", imageManifest=manifest, imageTag=tag)


def _setup(trainer_sources, cb, messages=None, **kw):
    messages = [] if messages is None else messages
    return setup.setup(settings.resolve(), progress=messages.append, poll_s=0, root=trainer_sources,
                       clients={"codebuild": cb}, **kw), messages


def test_the_bundle_holds_exactly_the_dockerfile_context_and_its_hash_is_stable(trainer_sources):
    b = bundle.build_bundle(trainer_sources)
    assert b.files == ["cloud_backend/container/Dockerfile", "cloud_backend/requirements-lock.txt",
                       "cloud_backend/trainer/train.py"]
    with zipfile.ZipFile(io.BytesIO(b.data)) as zf:
        assert zf.namelist() == b.files
    again = bundle.build_bundle(trainer_sources)
    assert again.data == b.data and again.tag == b.tag and len(b.tag) == bundle.TAG_LENGTH
    (trainer_sources / "unrelated.txt").write_text("changed")
    assert bundle.build_bundle(trainer_sources).tag == b.tag
    (trainer_sources / "cloud_backend" / "trainer" / "train.py").write_text("print('changed')\n")
    assert bundle.build_bundle(trainer_sources).tag != b.tag


def test_ui_and_readme_edits_do_not_change_the_image_tag_but_trainer_edits_do(trainer_sources):
    dockerfile = trainer_sources / "cloud_backend" / "container" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "COPY README.md /src/\nCOPY extension /src/extension\n")
    (trainer_sources / "README.md").write_text("v1")
    (trainer_sources / "extension").mkdir()
    (trainer_sources / "extension" / "ui.py").write_text("v1")
    first = bundle.build_bundle(trainer_sources)
    assert {"README.md", "extension/ui.py"} <= set(first.files)  # pip install of the package needs them
    (trainer_sources / "README.md").write_text("v2")
    (trainer_sources / "extension" / "ui.py").write_text("v2")
    second = bundle.build_bundle(trainer_sources)
    assert second.tag == first.tag and second.data != first.data
    (trainer_sources / "cloud_backend" / "requirements-lock.txt").write_text("diffusers>=0.36\n")
    assert bundle.build_bundle(trainer_sources).tag != first.tag


def test_the_shipped_dockerfile_bundles_and_its_base_image_is_what_the_build_role_may_pull():
    from cfnlint.decode import decode

    b = bundle.build_bundle()  # the real repository
    assert "cloud_backend/container/Dockerfile" in b.files and "cloud_backend/trainer/__main__.py" in b.files
    assert not any("__pycache__" in f or f.startswith((".venv", "tests/")) for f in b.files)
    text = (bundle.repo_root() / bundle.DOCKERFILE).read_text()
    template, _ = decode(str(stack.template_path()))
    pull = next(st for st in template["Resources"]["BuildRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"] if st["Sid"] == "PullBaseImage")
    repo = pull["Resource"]["Fn::Sub"].rsplit("/", 1)[1]
    assert f".amazonaws.com/{repo}:" in text, "the Dockerfile's FROM repository must be the one the role may pull"
    spec = template["Resources"]["BuildProject"]["Properties"]["Source"]["BuildSpec"]
    for arg in ("AWS_REGION", "DLC_ACCOUNT"):  # the ARGs the FROM line is built from
        assert f"ARG {arg}" in text and f"--build-arg {arg}=" in spec


def test_a_dockerfile_copying_a_missing_file_is_a_user_error(trainer_sources):
    (trainer_sources / "cloud_backend" / "requirements-lock.txt").unlink()
    with pytest.raises(UserError, match="cloud_backend/requirements-lock.txt"):
        bundle.build_bundle(trainer_sources)


def test_setup_creates_the_stack_builds_the_image_and_saves_the_settings(aws_env, trainer_sources):
    tag = bundle.build_bundle(trainer_sources).tag
    cb, st = _codebuild(tag)
    result, messages = _setup(trainer_sources, cb)
    st.assert_no_pending_responses()
    repo = boto3.client("ecr").describe_repositories(repositoryNames=["cloudlora-trainer"])["repositories"][0]
    assert result.image_uri == f"{repo['repositoryUri']}:{tag}" and result.image_built
    assert result.bucket == BUCKET and result.region == "us-east-1"
    saved = settings.read_file()
    assert saved["bucket"] == BUCKET and saved["image_uri"] == result.image_uri and saved["region"] == "us-east-1"
    assert saved["role_arn"] == boto3.client("iam").get_role(RoleName="cloudlora-sagemaker-us-east-1")["Role"]["Arn"]
    # the bundle CodeBuild reads is in the bucket, under the expiring build/ prefix
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"build/{tag}.zip")["Body"].read()
    assert "cloud_backend/container/Dockerfile" in zipfile.ZipFile(io.BytesIO(body)).namelist()
    # what will change was shown before it changed, then the build phases
    assert any(m.startswith("change: Add Bucket (AWS::S3::Bucket)") for m in messages)
    assert any("CREATE_COMPLETE" in m for m in messages)
    assert "build: phase BUILD SUCCEEDED" in messages
    assert settings.resolve().effective_backend == "sagemaker"


def test_a_rerun_with_unchanged_sources_changes_nothing_and_builds_nothing(aws_env, trainer_sources):
    tag = bundle.build_bundle(trainer_sources).tag
    _setup(trainer_sources, _codebuild(tag)[0])
    _push_image(tag)
    cb, st = _codebuild(None)  # any CodeBuild call would fail: nothing is stubbed
    result, messages = _setup(trainer_sources, cb)
    assert not result.image_built
    assert "stack: up to date (no changes)" in messages
    assert any("is up to date (sources unchanged)" in m for m in messages)


def test_rebuild_on_request_replaces_the_image_although_tags_are_immutable(aws_env, trainer_sources):
    tag = bundle.build_bundle(trainer_sources).tag
    _setup(trainer_sources, _codebuild(tag)[0])
    _push_image(tag)
    cb, st = _codebuild(tag)
    result, messages = _setup(trainer_sources, cb, force_build=True)
    st.assert_no_pending_responses()
    assert result.image_built and any(m.startswith("image: removed") for m in messages)
    images = boto3.client("ecr").list_images(repositoryName="cloudlora-trainer")["imageIds"]
    assert tag not in [i.get("imageTag") for i in images]  # gone until the (stubbed) build pushes it again


def test_changed_trainer_sources_build_an_image_with_a_new_tag(aws_env, trainer_sources):
    old = bundle.build_bundle(trainer_sources).tag
    _setup(trainer_sources, _codebuild(old)[0])
    _push_image(old)
    (trainer_sources / "cloud_backend" / "trainer" / "train.py").write_text("print('v2')\n")
    new = bundle.build_bundle(trainer_sources).tag
    cb, st = _codebuild(new)
    result, _ = _setup(trainer_sources, cb)
    st.assert_no_pending_responses()
    assert result.image_built and result.image_uri.endswith(f":{new}") and new != old


def test_a_failed_build_names_the_phase_the_reason_and_the_last_log_lines(aws_env, trainer_sources):
    tag = bundle.build_bundle(trainer_sources).tag
    _setup(trainer_sources, _codebuild(tag)[0])  # the stack (and its build log group) exists
    (trainer_sources / "cloud_backend" / "trainer" / "train.py").write_text("print('broken')\n")
    logs = boto3.client("logs")
    logs.create_log_stream(logGroupName=f"/aws/codebuild/{PROJECT}", logStreamName="build-1")
    now = int(datetime.now(timezone.utc).timestamp() * 1000)
    logs.put_log_events(logGroupName=f"/aws/codebuild/{PROJECT}", logStreamName="build-1", logEvents=[
        {"timestamp": now, "message": "Step 3/9 : RUN pip install -r /tmp/req.txt"},
        {"timestamp": now + 1, "message": "ERROR: No matching distribution found for diffusers>=99"}])
    tag = bundle.build_bundle(trainer_sources).tag
    settings.save({"image_uri": ""})
    cb, _ = _codebuild(tag, final="FAILED", failed_phase={"contexts": [
        {"statusCode": "COMMAND_EXECUTION_ERROR", "message": "Error while executing command: docker build. Reason: "
                                                             "exit status 1"}]})
    messages: list[str] = []
    with pytest.raises(UserError) as err:
        _setup(trainer_sources, cb, messages)
    assert "failed in phase BUILD" in err.value.message and "docker build" in err.value.message
    assert "No matching distribution found" in err.value.message
    assert "build log: ERROR: No matching distribution found for diffusers>=99" in messages
    # the stack outputs were saved before the build, so the store works already
    assert settings.read_file()["bucket"] == BUCKET and settings.read_file()["image_uri"] == ""


def _cfn_stub():
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    return cfn, Stubber(cfn)


def test_a_failed_stack_names_the_resource_and_the_missing_permission():
    cfn, st = _cfn_stub()
    st.add_client_error("describe_stacks", "ValidationError", "Stack with id cloudlora does not exist", 400)
    st.add_response("create_change_set", {"Id": "arn:aws:cloudformation:us-east-1:1:changeSet/c/1",
                                          "StackId": "arn:aws:cloudformation:us-east-1:1:stack/cloudlora/1"}, None)
    st.add_response("describe_change_set", {"Status": "CREATE_COMPLETE", "Changes": [
        {"Type": "Resource", "ResourceChange": {"Action": "Add", "LogicalResourceId": "SageMakerRole",
                                                "ResourceType": "AWS::IAM::Role"}}]}, None)
    now = datetime.now(timezone.utc)
    earlier = {"EventId": "0", "StackId": "s", "StackName": "cloudlora", "LogicalResourceId": "cloudlora",
               "ResourceType": "AWS::CloudFormation::Stack", "Timestamp": now, "ResourceStatus": "REVIEW_IN_PROGRESS"}
    st.add_response("describe_stack_events", {"StackEvents": [earlier]}, None)  # before executing: not reported
    st.add_response("execute_change_set", {}, None)
    reason = ("Resource handler returned message: \"User: arn:aws:iam::1:user/u is not authorized to perform: "
              "iam:CreateRole on resource: arn:aws:iam::1:role/cloudlora-sagemaker-us-east-1\"")
    events = {"StackEvents": [
        {"EventId": "3", "StackId": "s", "StackName": "cloudlora", "LogicalResourceId": "cloudlora",
         "ResourceType": "AWS::CloudFormation::Stack", "Timestamp": now, "ResourceStatus": "ROLLBACK_COMPLETE"},
        {"EventId": "2", "StackId": "s", "StackName": "cloudlora", "LogicalResourceId": "SageMakerRole",
         "ResourceType": "AWS::IAM::Role", "Timestamp": now, "ResourceStatus": "CREATE_FAILED",
         "ResourceStatusReason": reason},
        {"EventId": "1", "StackId": "s", "StackName": "cloudlora", "LogicalResourceId": "cloudlora",
         "ResourceType": "AWS::CloudFormation::Stack", "Timestamp": now, "ResourceStatus": "CREATE_IN_PROGRESS"},
        earlier]}
    stack_desc = {"Stacks": [{"StackName": "cloudlora", "CreationTime": now, "StackStatus": "ROLLBACK_COMPLETE"}]}
    st.add_response("describe_stack_events", events, None)
    st.add_response("describe_stacks", stack_desc, None)
    st.add_response("describe_stack_events", events, None)
    st.activate()
    messages: list[str] = []
    with pytest.raises(UserError) as err:
        stack.deploy(cfn, messages.append, template_body="{}", poll_s=0)
    assert "SageMakerRole (AWS::IAM::Role)" in err.value.message
    assert "iam:CreateRole" in err.value.fix and "user-policy.json" in err.value.fix
    assert "change: Add SageMakerRole (AWS::IAM::Role)" in messages
    assert sum("SageMakerRole" in m and "CREATE_FAILED" in m for m in messages) == 1  # each event reported once
    assert not any("REVIEW_IN_PROGRESS" in m for m in messages)  # events from before this operation are not


def test_a_user_without_cloudformation_permission_is_told_which_one(aws_env, trainer_sources):
    cfn, st = _cfn_stub()
    st.add_client_error("describe_stacks", "ValidationError", "Stack with id cloudlora does not exist", 400)
    st.add_client_error("create_change_set", "AccessDenied",
                        "User: arn:aws:iam::123456789012:user/u is not authorized to perform: "
                        "cloudformation:CreateChangeSet on resource: arn:aws:cloudformation:us-east-1:123:stack/c/*",
                        403)
    st.activate()
    with pytest.raises(UserError) as err:
        setup.setup(settings.resolve(), progress=lambda m: None, poll_s=0, root=trainer_sources,
                    clients={"cloudformation": cfn})
    assert "cloudformation:CreateChangeSet" in err.value.message
    assert "cloudformation:CreateChangeSet" in err.value.fix


def _deployed(trainer_sources) -> None:
    tag = bundle.build_bundle(trainer_sources).tag
    _setup(trainer_sources, _codebuild(tag)[0])
    boto3.client("s3").put_object(Bucket=BUCKET, Key="models/m/model.safetensors", Body=b"weights")


def test_delete_asks_before_emptying_the_bucket_and_a_no_keeps_everything(aws_env, trainer_sources):
    _deployed(trainer_sources)
    questions: list[str] = []
    done = setup.delete_stack(settings.resolve(), confirm=lambda q: questions.append(q) or False,
                              progress=lambda m: None, poll_s=0)
    assert not done
    assert questions and BUCKET in questions[0] and "2 objects" in questions[0]  # the model and the build bundle
    assert stack.describe(boto3.client("cloudformation")) is not None
    assert boto3.client("s3").head_object(Bucket=BUCKET, Key="models/m/model.safetensors")
    assert settings.read_file()["bucket"] == BUCKET


def test_delete_with_yes_empties_the_bucket_removes_the_stack_and_forgets_the_settings(aws_env, trainer_sources):
    _deployed(trainer_sources)
    messages: list[str] = []
    assert setup.delete_stack(settings.resolve(), confirm=lambda q: True, progress=messages.append, poll_s=0)
    assert stack.describe(boto3.client("cloudformation")) is None
    assert BUCKET not in [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
    saved = settings.read_file()
    assert saved["bucket"] == "" and saved["role_arn"] == "" and saved["image_uri"] == ""
    assert any("emptied (2 objects)" in m for m in messages)


def test_setup_delete_without_a_terminal_and_without_yes_deletes_nothing(aws_env, trainer_sources, capsys):
    _deployed(trainer_sources)
    assert cli_main(["setup", "--delete"]) == 1
    assert "pass --yes" in capsys.readouterr().err
    assert stack.describe(boto3.client("cloudformation")) is not None


def test_setup_without_credentials_exits_1_with_the_fix(capsys):
    assert cli_main(["setup", "--region", "us-east-1"]) == 1
    err = capsys.readouterr().err
    assert "No AWS credentials found" in err and "aws configure --profile" in err


def test_setup_without_a_region_says_where_to_set_it(aws_env, monkeypatch, capsys):
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert cli_main(["setup"]) == 1
    assert "No AWS region" in capsys.readouterr().err


def test_a_stack_left_in_rollback_complete_is_replaced_and_created_again():
    cfn, st = _cfn_stub()
    now = datetime.now(timezone.utc)
    gone = ("describe_stacks", "ValidationError", "Stack with id cloudlora does not exist")
    st.add_response("describe_stacks", {"Stacks": [{"StackName": "cloudlora", "CreationTime": now,
                                                    "StackStatus": "ROLLBACK_COMPLETE"}]}, None)
    st.add_response("describe_stack_events", {"StackEvents": []}, None)
    st.add_response("delete_stack", {}, {"StackName": "cloudlora"})
    st.add_response("describe_stack_events", {"StackEvents": []}, None)
    st.add_client_error(gone[0], gone[1], gone[2], 400)
    st.add_response("create_change_set", {"Id": "cs-1", "StackId": "s-2"}, None)
    st.add_response("describe_change_set", {"Status": "CREATE_COMPLETE", "Changes": []}, None)
    st.add_response("describe_stack_events", {"StackEvents": []}, None)
    st.add_response("execute_change_set", {}, None)
    st.add_response("describe_stack_events", {"StackEvents": []}, None)
    st.add_response("describe_stacks", {"Stacks": [{
        "StackName": "cloudlora", "CreationTime": now, "StackStatus": "CREATE_COMPLETE",
        "Outputs": [{"OutputKey": "BucketName", "OutputValue": BUCKET}]}]}, None)
    st.add_response("describe_stack_events", {"StackEvents": []}, None)
    st.activate()
    messages: list[str] = []
    out = stack.deploy(cfn, messages.append, template_body="{}", poll_s=0)
    st.assert_no_pending_responses()
    assert out == {"BucketName": BUCKET}
    assert any("after a failed creation; deleting it first" in m for m in messages)
