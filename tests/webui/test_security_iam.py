"""The AWS permissions have no path to admin. The user policy, the roles' boundary and the stack are checked statically
(tools/iam_policy.py: the known escalation patterns, and an evaluator answering "may this principal do X on Y?" for
these documents, since moto's IAM evaluates nothing), and setup's guardrails run against moto."""
from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import boto3
import pytest

# moto's CloudFormation skips the bucket policy and the CodeBuild project (and says so); these tests need neither.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS::")

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/cloudlora-boundary"
BUCKET = f"cloudlora-{ACCOUNT}-us-east-1"


def _load_tool():
    spec = importlib.util.spec_from_file_location("iam_policy", ROOT / "tools" / "iam_policy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


iam = _load_tool()


@pytest.fixture(scope="module")
def user():
    return iam.load_json(iam.USER_POLICY)


@pytest.fixture(scope="module")
def boundary():
    return iam.load_json(iam.BOUNDARY)


@pytest.fixture(scope="module")
def template():
    return iam.load_template()


def role(template, name):
    return iam.role_policy(template["Resources"][name])


def test_the_shipped_documents_pass_every_escalation_check():
    assert iam.check() == []
    assert iam.doc_is_current(), "run `python tools/iam_policy.py write`"


def test_the_escalation_of_the_report_is_closed(user, boundary):
    """A user of the policy created cloudlora-codebuild-x with *:* and ran any buildspec (or any image on
    SageMaker). Now a cloudlora role exists only with the boundary, and the boundary holds no IAM at all."""
    new_role = f"arn:aws:iam::{ACCOUNT}:role/cloudlora-codebuild-x"
    assert not iam.allowed(user, "iam:CreateRole", new_role)
    via_stack = {"aws:CalledVia": ["cloudformation.amazonaws.com"]}  # only the stack creates roles (their trust)
    assert iam.allowed(user, "iam:CreateRole", new_role, {"iam:PermissionsBoundary": BOUNDARY, **via_stack})
    assert not iam.allowed(user, "iam:CreateRole", new_role,
                           {"iam:PermissionsBoundary": f"arn:aws:iam::{ACCOUNT}:policy/AdministratorAccess"})
    assert not iam.allowed(user, "iam:PutRolePolicy", new_role)  # a role without the boundary
    for action in ("iam:DeleteRolePermissionsBoundary", "iam:AttachRolePolicy"):
        assert not iam.allowed(user, action, new_role, {"iam:PermissionsBoundary": BOUNDARY}), action
    for action in ("iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicy"):
        assert not iam.allowed(user, action, BOUNDARY), action
    # the worst the user can then do: give the role "*:*" and run code as it. The boundary still decides.
    star = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    for action, resource in [("iam:CreateUser", "*"), ("iam:AttachUserPolicy", "*"), ("sts:AssumeRole", "*"),
                             ("s3:GetObject", "arn:aws:s3:::someone-elses-bucket/x"),
                             ("sagemaker:CreateTrainingJob", "*"), ("ec2:RunInstances", "*"),
                             ("kms:Decrypt", "*"), ("secretsmanager:GetSecretValue", "*")]:
        assert not iam.allowed([star, boundary], action, resource), action
    assert iam.allowed([star, boundary], "s3:GetObject", f"arn:aws:s3:::{BUCKET}/models/x")


def test_roles_are_passed_only_to_their_own_service(user):
    sm = f"arn:aws:iam::{ACCOUNT}:role/cloudlora-sagemaker-us-east-1"
    cb = f"arn:aws:iam::{ACCOUNT}:role/cloudlora-codebuild-us-east-1"
    tagged = {"iam:ResourceTag/cloudlora:boundary": "cloudlora-boundary"}  # the stack's roles (with the boundary)
    assert iam.allowed(user, "iam:PassRole", sm, {"iam:PassedToService": "sagemaker.amazonaws.com", **tagged})
    assert iam.allowed(user, "iam:PassRole", cb, {"iam:PassedToService": "codebuild.amazonaws.com", **tagged})
    for service in ("lambda.amazonaws.com", "ec2.amazonaws.com", "cloudformation.amazonaws.com",
                    "glue.amazonaws.com"):
        assert not iam.allowed(user, "iam:PassRole", sm, {"iam:PassedToService": service, **tagged}), service
    assert not iam.allowed(user, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/Admin",
                           {"iam:PassedToService": "sagemaker.amazonaws.com", **tagged})


def test_the_bucket_cannot_be_made_public(user):
    for action, resource in [("s3:PutBucketPublicAccessBlock", f"arn:aws:s3:::{BUCKET}"),
                             ("s3:PutBucketAcl", f"arn:aws:s3:::{BUCKET}"),
                             ("s3:PutObjectAcl", f"arn:aws:s3:::{BUCKET}/models/x")]:
        assert not iam.allowed(user, action, resource), action
    # a bucket policy may still be written by the stack (its TLS-only policy), never directly (test_hardening_iam);
    # with Block Public Access on, S3 itself rejects one that would make the bucket public
    via_stack = {"aws:CalledVia": ["cloudformation.amazonaws.com"]}
    assert iam.allowed(user, "s3:PutBucketPolicy", f"arn:aws:s3:::{BUCKET}", via_stack)
    assert not iam.allowed(user, "s3:PutBucketPolicy", f"arn:aws:s3:::{BUCKET}")


def test_training_jobs_run_only_on_the_instance_types_the_train_tab_shows(user):
    from cloudlora.jobs.sagemaker_backend import instances

    job = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:training-job/cl-demo-0123456789"
    (statement,) = [s for s in user["Statement"] if s.get("Sid") == iam.INSTANCE_SID]
    listed = statement["Condition"]["ForAllValues:StringEquals"]["sagemaker:InstanceTypes"]
    assert listed == instances.sagemaker_names()
    for name in instances.sagemaker_names():
        assert iam.allowed(user, "sagemaker:CreateTrainingJob", job, {"sagemaker:InstanceTypes": [name]}), name
    for other in (["ml.p5.48xlarge"], ["ml.g5.xlarge", "ml.p5.48xlarge"], ["ml.trn1.32xlarge"]):
        assert not iam.allowed(user, "sagemaker:CreateTrainingJob", job, {"sagemaker:InstanceTypes": other})
    assert not iam.allowed(user, "sagemaker:CreateTrainingJob", job, {})  # no instance type in the request


def test_the_allow_list_follows_the_catalogue(tmp_path, monkeypatch, user):
    """`tools/iam_policy.py write` regenerates it; `check` fails while it differs."""
    stale = copy.deepcopy(user)
    (statement,) = [s for s in stale["Statement"] if s.get("Sid") == iam.INSTANCE_SID]
    statement["Condition"]["ForAllValues:StringEquals"]["sagemaker:InstanceTypes"].remove("ml.g5.xlarge")
    problems = iam.check_user_policy(stale, iam.catalogue_instance_types())
    assert len(problems) == 1 and "tools/iam_policy.py write" in problems[0]


def _spec(container="cloudlora"):
    from cloudlora.jobs.spec import JobSpec

    return JobSpec(model="tiny", dataset="demo", family="sd15", config="", lora_name="demo", backend="sagemaker",
                   instance_type="ml.g5.2xlarge", spot=True, container=container, image_uri="x",
                   client_token="t")


def _uris(request):
    from cloudlora.jobs.sagemaker_backend.sagemaker import parse_s3_uri

    reads = [parse_s3_uri(c["DataSource"]["S3DataSource"]["S3Uri"])[1] for c in request["InputDataConfig"]]
    writes = [parse_s3_uri(request["OutputDataConfig"]["S3OutputPath"])[1],
              parse_s3_uri(request["CheckpointConfig"]["S3Uri"])[1],
              parse_s3_uri(request["TensorBoardOutputConfig"]["S3OutputPath"])[1]]
    return reads, writes


@pytest.mark.parametrize("container", ["cloudlora", "kohya-sample"])
def test_the_sagemaker_role_reads_the_jobs_inputs_and_writes_only_its_outputs(template, boundary, container):
    from cloudlora.jobs.sagemaker_backend import sagemaker

    parts = {p: f"models/flux/{p}.safetensors" for p in ("clip_l", "t5xxl", "ae")} if container == "cloudlora" else None
    network = "jobs/cl-demo/network/first.safetensors" if container == "cloudlora" else ""  # continue training
    request = sagemaker.build_request(_spec(container), bucket=BUCKET, role_arn="r",
                                      model_key="models/tiny/tiny.safetensors", dataset_name="demo", part_keys=parts,
                                      network_key=network)
    policies = [role(template, "SageMakerRole"), boundary]
    reads, writes = _uris(request)
    obj = f"arn:aws:s3:::{BUCKET}/"
    for prefix in reads:
        assert iam.allowed(policies, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": prefix}), prefix
        assert iam.allowed(policies, "s3:GetObject", obj + prefix + "file"), prefix
        assert not iam.allowed(policies, "s3:PutObject", obj + prefix + "file"), prefix
    for prefix in writes:
        assert iam.allowed(policies, "s3:PutObject", obj + prefix + "job/output/model.tar.gz"), prefix
    # never what other jobs, the image build or the user rely on
    for key in ("models/tiny/tiny.safetensors", "datasets/demo/10_demo/1.png", "jobs/cl-other/job.json",
                "build/0123.zip", "jobs/cl-other/config/config.toml"):
        for action in ("s3:PutObject", "s3:DeleteObject"):
            assert not iam.allowed(policies, action, obj + key), (action, key)
    assert not iam.allowed(policies, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": "build/"})


def test_the_roles_trust_only_their_service_in_this_account(template):
    for name in ("SageMakerRole", "BuildRole"):
        (trust,) = template["Resources"][name]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
        arn = iam._sub(trust["Condition"]["ArnLike"]["aws:SourceArn"], iam.STACK_NAMES)
        assert arn.startswith(f"arn:aws:{'sagemaker' if name == 'SageMakerRole' else 'codebuild'}:us-east-1:{ACCOUNT}:")


def test_training_jobs_run_without_network_except_the_kohya_sample_container():
    from cloudlora.jobs.sagemaker_backend import sagemaker

    ours = sagemaker.build_request(_spec(), bucket=BUCKET, role_arn="r", model_key="models/t/t.safetensors",
                                   dataset_name="demo")
    assert ours["EnableNetworkIsolation"] is True
    kohya = sagemaker.build_request(_spec("kohya-sample"), bucket=BUCKET, role_arn="r",
                                    model_key="models/t/t.safetensors", dataset_name="demo")
    assert "EnableNetworkIsolation" not in kohya  # it downloads its tokenizers from the Hugging Face hub


def test_deleted_or_overwritten_objects_stay_recoverable_for_a_while(template):
    bucket = template["Resources"]["Bucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    (rule,) = [r for r in bucket["LifecycleConfiguration"]["Rules"] if "NoncurrentVersionExpiration" in r]
    assert rule["Prefix"] == "" and rule["ExpiredObjectDeleteMarker"] is True
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == {"Ref": "NoncurrentVersionDays"}


# --- the checker catches each pattern ---------------------------------------------------------------------------

def _without_condition(doc, sid):
    for s in doc["Statement"]:
        if s.get("Sid") == sid:
            s.pop("Condition")


def _add(doc, action, resource="*"):
    doc["Statement"].append({"Sid": "Added", "Effect": "Allow", "Action": action, "Resource": resource})


def _drop(doc, sid):
    doc["Statement"] = [s for s in doc["Statement"] if s.get("Sid") != sid]


@pytest.mark.parametrize("break_it, expected", [
    (lambda d: _without_condition(d, "SetupRolesOnlyWithTheBoundary"), "without the condition iam:PermissionsBoundary"),
    (lambda d: _add(d, "iam:AttachRolePolicy", "arn:aws:iam::*:role/cloudlora-*"), "allows iam:Attach*Policy"),
    (lambda d: _add(d, "iam:CreatePolicyVersion", "arn:aws:iam::*:policy/cloudlora-boundary"),
     "allows iam:CreatePolicyVersion"),
    (lambda d: _add(d, "lambda:CreateFunction"), "allows lambda:*"),
    (lambda d: _add(d, "s3:PutBucketPublicAccessBlock", "arn:aws:s3:::cloudlora-*"),
     "allows s3:PutBucketPublicAccessBlock"),
    (lambda d: _add(d, "iam:*", "arn:aws:iam::*:role/cloudlora-*"), "a whole service"),
    (lambda d: _add(d, "iam:PassRole"), "iam:PassRole without iam:PassedToService"),
    (lambda d: _without_condition(d, iam.INSTANCE_SID), "without the instance-type allow-list"),
    (lambda d: _drop(d, "KeepTheGuardrails"), "no explicit Deny of iam:DeleteRolePermissionsBoundary"),
    (lambda d: _drop(d, "KeepTheBucketPrivate"), "no explicit Deny of s3:PutBucketPublicAccessBlock"),
    (lambda d: _add(d, "s3:DeleteObject"), "on every resource"),
])
def test_the_checker_finds_each_way_to_escalate_in_the_user_policy(user, break_it, expected):
    broken = copy.deepcopy(user)
    break_it(broken)
    problems = iam.check_user_policy(broken, iam.catalogue_instance_types())
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("break_it, expected", [
    (lambda t: t["Resources"]["BuildRole"]["Properties"].pop("PermissionsBoundary"), "no permissions boundary"),
    (lambda t: t["Resources"]["SageMakerRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
     ["Condition"].pop("ArnLike"), "does not check both"),
    (lambda t: t["Resources"]["SageMakerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": {"Fn::Sub": "${Bucket.Arn}/*"}}),
     "may s3:PutObject build/abc.zip"),
    (lambda t: t["Resources"]["Bucket"]["Properties"].pop("VersioningConfiguration"), "no versioning"),
    (lambda t: t["Resources"].update(Admin={"Type": "AWS::IAM::ManagedPolicy", "Properties": {}}),
     "creates IAM AWS::IAM::ManagedPolicy"),
])
def test_the_checker_finds_each_weakness_in_the_stack(template, boundary, break_it, expected):
    broken = copy.deepcopy(template)
    break_it(broken)
    problems = iam.check_template(broken, boundary)
    assert any(expected in p for p in problems), problems


def test_the_boundary_holds_nothing_beyond_the_stacks_purpose(boundary):
    assert iam.check_boundary(boundary) == []
    wider = copy.deepcopy(boundary)
    wider["Statement"].append({"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"})
    assert iam.check_boundary(wider)


# --- setup's guardrails, in moto -----------------------------------------------------------------------------------

def test_the_stack_creates_its_roles_with_the_boundary(aws_env):
    from cloudlora.aws import stack

    stack.deploy(boto3.client("cloudformation"), lambda _m: None, poll_s=0)
    client = boto3.client("iam")
    for name in ("cloudlora-sagemaker-us-east-1", "cloudlora-codebuild-us-east-1"):
        got = client.get_role(RoleName=name)["Role"]["PermissionsBoundary"]
        assert got == {"PermissionsBoundaryType": "PermissionsBoundaryPolicy", "PermissionsBoundaryArn": BOUNDARY}


def test_setup_without_the_boundary_tells_what_the_administrator_runs(aws_env):
    from cloudlora import settings
    from cloudlora.aws import setup
    from cloudlora.errors import UserError

    boto3.client("iam").delete_policy(PolicyArn=BOUNDARY)
    messages = []
    with pytest.raises(UserError) as err:
        setup.setup(settings.resolve(), progress=messages.append, poll_s=0, root=ROOT)
    assert "cloudlora-boundary does not exist" in err.value.message
    assert err.value.fix == ("An administrator creates it once: aws iam create-policy --policy-name cloudlora-boundary "
                             "--policy-document file://cloud_backend/infra/role-boundary.json")
    assert boto3.client("cloudformation").list_stacks()["StackSummaries"] == []  # nothing was created


def test_setup_says_whether_block_public_access_is_on(aws_env):
    from cloudlora.aws import guardrails

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    messages = []
    assert guardrails.check_bucket_private(s3, BUCKET, messages.append) is False  # moto sets no default
    assert "aws s3api put-public-access-block --bucket " + BUCKET in messages[-1]
    s3.put_public_access_block(Bucket=BUCKET, PublicAccessBlockConfiguration={
        k: True for k in guardrails.PUBLIC_ACCESS_SETTINGS})
    assert guardrails.check_bucket_private(s3, BUCKET, messages.append) is True
    assert messages[-1] == f"ok: Block Public Access is on for {BUCKET}"


def test_the_docs_have_a_security_page_naming_the_boundary(boundary):
    security = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    assert "role-boundary.json" in security and security.startswith("# Security")
    assert "docs/security.md" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert json.loads((ROOT / "cloud_backend" / "infra" / "role-boundary.json").read_text()) == boundary
