"""The CloudFormation stack and the user policy keep their security promises (read from the files themselves)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "cloud_backend" / "infra" / "template.yaml"
USER_POLICY = ROOT / "cloud_backend" / "infra" / "user-policy.json"


@pytest.fixture(scope="module")
def template() -> dict:
    from cfnlint.decode import decode

    tpl, problems = decode(str(TEMPLATE))
    assert not problems, problems
    return tpl


def _resources(template, type_):
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def _statements(role) -> list[dict]:
    out = []
    for policy in role["Properties"].get("Policies", []):
        out += policy["PolicyDocument"]["Statement"]
    return out


def _as_list(x):
    return x if isinstance(x, list) else [x]


def test_cfn_lint_passes_on_the_template():
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    assert cfn_lint.exists(), "cfn-lint is part of the [dev] extra"
    run = subprocess.run([str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_bucket_is_encrypted_private_and_owner_enforced(template):
    (bucket,) = _resources(template, "AWS::S3::Bucket").values()
    props = bucket["Properties"]
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] in ("AES256", "aws:kms")
    # Block Public Access is S3's default for new buckets; setting it here would need s3:PutBucketPublicAccessBlock,
    # which could switch it off too, so the user policy denies it and setup checks it (tests/webui/test_security_iam)
    assert "PublicAccessBlockConfiguration" not in props
    assert props["OwnershipControls"]["Rules"][0]["ObjectOwnership"] == "BucketOwnerEnforced"


def test_the_bucket_policy_denies_every_request_without_tls(template):
    (policy,) = _resources(template, "AWS::S3::BucketPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    deny = [s for s in statements if s["Effect"] == "Deny"
            and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)]
    assert deny, "a Deny on aws:SecureTransport=false is required"
    assert deny[0]["Action"] == "s3:*" and deny[0]["Principal"] == "*"
    resources = json.dumps(deny[0]["Resource"])
    assert "Bucket" in resources and "/*" in resources  # the bucket and its objects


def test_lifecycle_aborts_stale_uploads_and_expires_job_scratch(template):
    (bucket,) = _resources(template, "AWS::S3::Bucket").values()
    rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    abort = [r for r in rules if "AbortIncompleteMultipartUpload" in r]
    assert abort and abort[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 7
    assert abort[0].get("Prefix", "") == "" and abort[0]["Status"] == "Enabled"
    from cloudlora.aws.stack import SCRATCH_PREFIX

    scratch = [r for r in rules if r.get("Prefix") == SCRATCH_PREFIX]
    assert scratch and scratch[0]["ExpirationInDays"] == {"Ref": "ScratchExpirationDays"}
    # models/, datasets/ and jobs/ are never expired
    assert not [r for r in rules if "ExpirationInDays" in r and r.get("Prefix", "") in ("", "models/", "datasets/",
                                                                                         "jobs/")]


def test_the_repository_scans_on_push_and_keeps_only_the_last_images(template):
    (repo,) = _resources(template, "AWS::ECR::Repository").values()
    props = repo["Properties"]
    assert props["ImageScanningConfiguration"]["ScanOnPush"] is True
    text = props["LifecyclePolicy"]["LifecyclePolicyText"]["Fn::Sub"]
    rule = json.loads(text.replace("${KeepImages}", "5"))["rules"][0]
    assert rule["selection"]["countType"] == "imageCountMoreThan" and rule["action"]["type"] == "expire"


def test_no_role_grants_s3_on_a_wildcard_resource(template):
    for name, role in _resources(template, "AWS::IAM::Role").items():
        for st in _statements(role):
            actions = _as_list(st["Action"])
            if any(a.startswith("s3:") for a in actions):
                for res in _as_list(st["Resource"]):
                    assert res != "*", f"{name}: S3 on '*'"
                    assert "Bucket" in json.dumps(res), f"{name}: S3 on something other than our bucket: {res}"


def test_wildcard_resources_only_where_aws_allows_no_other(template):
    allowed = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
    for name, role in _resources(template, "AWS::IAM::Role").items():
        for st in _statements(role):
            if "*" in _as_list(st["Resource"]):
                assert set(_as_list(st["Action"])) <= allowed, f"{name}: {st['Action']} on '*'"
            if "cloudwatch:PutMetricData" in _as_list(st["Action"]):
                assert st["Condition"]["StringEquals"]["cloudwatch:namespace"] == "/aws/sagemaker/TrainingJobs"


def test_the_execution_role_is_for_sagemaker_of_this_account_only(template):
    role = template["Resources"]["SageMakerRole"]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    actions = {a for st in _statements(role) for a in _as_list(st["Action"])}
    assert {"s3:GetObject", "s3:PutObject", "ecr:BatchGetImage", "logs:PutLogEvents"} <= actions
    assert not any(a.endswith(":*") or a == "*" for a in actions)


def test_the_build_project_builds_the_trainer_dockerfile_and_pushes_the_hash_tag(template):
    (project,) = _resources(template, "AWS::CodeBuild::Project").values()
    spec = project["Properties"]["Source"]["BuildSpec"]
    assert "763104351884" in json.dumps(template["Parameters"]["DlcAccount"])
    assert "docker build -f cloud_backend/container/Dockerfile" in spec
    assert 'docker push "$REPOSITORY_URI:$IMAGE_TAG"' in spec
    assert spec.count("docker login") == 2  # the DLC registry and ours
    assert project["Properties"]["Environment"]["PrivilegedMode"] is True


def test_outputs_give_bucket_role_image_repository_and_region(template):
    assert {"BucketName", "RoleArn", "RepositoryUri", "Region"} <= set(template["Outputs"])


def test_the_user_policy_passes_the_role_only_to_sagemaker():
    policy = json.loads(USER_POLICY.read_text())
    passes = [s for s in policy["Statement"] if "iam:PassRole" in _as_list(s["Action"])]
    to_sagemaker = [s for s in passes if "cloudlora-sagemaker" in json.dumps(s["Resource"])]
    assert to_sagemaker, "PassRole on the execution role"
    for st in passes:
        assert st["Condition"]["StringEquals"]["iam:PassedToService"] in ("sagemaker.amazonaws.com",
                                                                          "codebuild.amazonaws.com")
        assert "*" != st["Resource"]
    assert to_sagemaker[0]["Condition"]["StringEquals"]["iam:PassedToService"] == "sagemaker.amazonaws.com"


def test_the_user_policy_scopes_s3_and_sagemaker_to_our_names():
    policy = json.loads(USER_POLICY.read_text())
    for st in policy["Statement"]:
        actions = _as_list(st["Action"])
        resources = _as_list(st["Resource"])
        if any(a.startswith("s3:") for a in actions):
            assert all(r.startswith("arn:aws:s3:::cloudlora-") for r in resources), st["Sid"]
        if any(a.startswith(("sagemaker:Create", "sagemaker:Stop", "sagemaker:Describe")) for a in actions):
            # the names the jobs module gives SageMaker training jobs
            from cloudlora.jobs.sagemaker_backend.sagemaker import NAME_PREFIX

            assert resources == [f"arn:aws:sagemaker:*:*:training-job/{NAME_PREFIX}*"], st["Sid"]
        if "*" in resources:
            # only actions without resource-level permissions
            assert all(a in ("sagemaker:ListTrainingJobs", "servicequotas:ListServiceQuotas",
                             "servicequotas:ListAWSDefaultServiceQuotas", "servicequotas:GetServiceQuota",
                             "logs:DescribeLogGroups") for a in actions), st["Sid"]


def test_the_user_policy_covers_every_call_setup_and_the_doctor_make():
    policy = json.loads(USER_POLICY.read_text())
    granted = {a for st in policy["Statement"] for a in _as_list(st["Action"])}
    needed = {"cloudformation:CreateChangeSet", "cloudformation:DescribeChangeSet", "cloudformation:ExecuteChangeSet",
              "cloudformation:DescribeStacks", "cloudformation:DescribeStackEvents", "cloudformation:DeleteStack",
              "codebuild:StartBuild", "codebuild:BatchGetBuilds", "ecr:DescribeImages", "ecr:BatchDeleteImage",
              "s3:PutObject", "s3:ListBucket", "s3:ListBucketVersions", "s3:DeleteObjectVersion", "logs:GetLogEvents", "iam:GetRole", "iam:GetPolicy", "iam:SimulatePrincipalPolicy", "s3:GetBucketPublicAccessBlock",
              "servicequotas:ListServiceQuotas", "servicequotas:ListAWSDefaultServiceQuotas",
              "sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob"}
    assert needed <= granted, sorted(needed - granted)


def test_the_aws_doc_shows_the_user_policy_as_shipped():
    doc = (ROOT / "docs" / "aws.md").read_text(encoding="utf-8")
    section = doc[doc.index("# AWS setup"):]
    start = section.index("```json\n") + len("```json\n")
    shown = json.loads(section[start:section.index("\n```", start)])
    assert shown == json.loads(USER_POLICY.read_text())
