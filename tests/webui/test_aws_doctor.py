"""The doctor: every failure is a problem line that says what is wrong and how to fix it, and makes the exit code 1.

AWS runs on moto's server (tests/webui/fixtures/moto.py); what moto cannot produce (rejected keys, expired tokens,
quotas, policy simulation) is answered by botocore's Stubber on the doctor's own client for that service.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import boto3
import pytest
from botocore.stub import Stubber

from cloudlora import doctor, settings
from cloudlora.cli import main as cli_main

TRUST_SAGEMAKER = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


@pytest.fixture
def stub_service(monkeypatch):
    """stub_service("sts") -> a Stubber on the client the doctor (and setup) will get for that service."""
    from cloudlora.aws import session as aws_session

    real_client = aws_session.client
    stubbed: dict[str, object] = {}
    stubbers: dict[str, Stubber] = {}

    def client(settings_, service, **kw):
        if service in stubbers:
            return stubbed[service]
        return real_client(settings_, service, **kw)

    def stub(service: str) -> Stubber:
        c = boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        stubbed[service] = c
        stubbers[service] = Stubber(c)
        stubbers[service].activate()
        return stubbers[service]

    monkeypatch.setattr(aws_session, "client", client)
    return stub


def _checks(**flags):
    """The doctor's lines by name, for SageMaker unless told otherwise (what this file is about: with the local
    backend, AWS findings are information, see the first tests)."""
    flags.setdefault("backend", "sagemaker")
    return {c.name: c for c in doctor.run_checks(settings.resolve(flags))}


def _quota_page(value: float, itype="ml.g5.2xlarge", code="L-ABCD1234"):
    return {"Quotas": [
        {"ServiceCode": "sagemaker", "QuotaName": f"{itype} for training job usage", "QuotaCode": code,
         "Value": value},
        {"ServiceCode": "sagemaker", "QuotaName": f"{itype} for spot training job usage", "QuotaCode": "L-SPOT0001",
         "Value": value}]}


def _stack_resources(env, *, trust=TRUST_SAGEMAKER, tag="abc123"):
    """Bucket, role and image as `cloudlora setup` would leave them; returns the settings flags."""
    boto3.client("s3").create_bucket(Bucket="cloudlora-123456789012-us-east-1")
    role = boto3.client("iam").create_role(RoleName="cloudlora-sagemaker-us-east-1", AssumeRolePolicyDocument=trust)
    ecr = boto3.client("ecr")
    repo = ecr.create_repository(repositoryName="cloudlora-trainer")["repository"]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"digest": "sha256:" + "1" * 64, "size": 1,
                                      "mediaType": "application/vnd.docker.container.image.v1+json"}, "layers": []})
    ecr.put_image(repositoryName="cloudlora-trainer", imageManifest=manifest, imageTag=tag)
    return {"bucket": "cloudlora-123456789012-us-east-1", "role_arn": role["Role"]["Arn"],
            "image_uri": f"{repo['repositoryUri']}:{tag}", "region": "us-east-1"}


def test_no_credentials_with_the_local_backend_is_information_and_exit_0(capsys):
    assert cli_main(["doctor"]) == 0  # local training needs no AWS
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if "aws credentials" in l)
    assert line.startswith("skip") and "No AWS credentials found" in line and "Not needed" in line
    assert "aws configure --profile" in line, "how to add them for SageMaker is still said"
    assert "PROBLEM" not in out and "No problems found." in out
    # the local backend lines say whether local training works
    assert "local gpu" in out and "trainer environment" in out


def test_no_credentials_when_sagemaker_is_chosen_is_a_problem_with_the_fix_and_exit_1(capsys):
    assert cli_main(["doctor", "--backend", "sagemaker"]) == 1
    assert "PROBLEM  aws credentials" in capsys.readouterr().out
    checks = _checks(backend="sagemaker")
    creds = checks["aws credentials"]
    assert creds.status == "problem" and "No AWS credentials found" in creds.detail
    assert "aws configure --profile" in creds.fix and "Add access key" in creds.fix and "aws sso login" in creds.fix
    assert doctor.has_problem(list(checks.values()))


def test_an_s3_store_needs_credentials_even_when_training_is_local():
    checks = _checks(backend="local", bucket="my-store-bucket")
    assert checks["aws credentials"].status == "problem"


def test_cloudlora_doctor_command_without_credentials_for_local_training_exits_0(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    run = subprocess.run([sys.executable, "-m", "cloudlora", "doctor", "--json"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    creds = next(c for c in report["checks"] if c["name"] == "aws credentials")
    assert creds["status"] == "skip" and "No AWS credentials" in creds["detail"] and "aws configure" in creds["detail"]
    assert report["ok"] is True


def test_an_expired_sso_login_says_run_aws_sso_login_with_the_profile(isolated_settings, monkeypatch, capsys):
    home = isolated_settings
    start_url = "https://example.awsapps.com/start"
    (home / "aws-config").write_text(
        f"[profile work]\nsso_start_url = {start_url}\nsso_region = us-east-1\nsso_account_id = 123456789012\n"
        "sso_role_name = Dev\nregion = us-east-1\n")
    cache = home / ".aws" / "sso" / "cache"
    cache.mkdir(parents=True)
    (cache / (hashlib.sha1(start_url.encode()).hexdigest() + ".json")).write_text(json.dumps(
        {"startUrl": start_url, "region": "us-east-1", "accessToken": "old", "expiresAt": "2020-01-01T00:00:00Z"}))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_PROFILE", "work")
    assert cli_main(["doctor", "--backend", "sagemaker"]) == 1
    out = capsys.readouterr().out
    assert "SSO session of profile 'work' has expired" in out
    assert "aws sso login --profile work" in out


def test_rejected_access_keys_are_reported_as_invalid_keys(aws_env, stub_service):
    stub_service("sts").add_client_error("get_caller_identity", "InvalidClientTokenId",
                                         "The security token included in the request is invalid.", 403)
    c = _checks()["aws credentials"]
    assert c.status == "problem" and "rejected the access key" in c.detail
    assert "Add access key" in c.fix


def test_expired_session_credentials_are_reported_with_how_to_refresh(aws_env, stub_service, isolated_settings):
    (isolated_settings / "aws-credentials").write_text(
        "[temp]\naws_access_key_id = ASIAXXXXXXXXXXXXXXXX\naws_secret_access_key = s\naws_session_token = t\n")
    stub_service("sts").add_client_error("get_caller_identity", "ExpiredToken", "The security token has expired.", 400)
    c = _checks(aws_profile="temp")["aws credentials"]
    assert c.status == "problem" and "expired" in c.detail and "aws sso login --profile temp" in c.fix


def test_a_missing_region_is_a_problem(aws_env, monkeypatch):
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    checks = _checks()
    assert checks["aws credentials"].status == "ok"
    assert checks["region"].status == "problem" and "us-east-1" in checks["region"].fix
    assert checks["bucket"].status == "skip"


def test_a_configured_bucket_that_does_not_exist_is_a_problem(aws_env):
    c = _checks(bucket="cloudlora-nobody-here")["bucket"]
    assert c.status == "problem" and "does not exist" in c.detail and "cloudlora setup" in c.fix


def test_a_bucket_the_account_cannot_use_says_so(aws_env, stub_service):
    stub_service("s3").add_client_error("head_bucket", "403", "Forbidden", 403)
    c = _checks(bucket="someone-elses-bucket")["bucket"]
    assert c.status == "problem" and "cannot use it" in c.detail and "user-policy.json" in c.fix


def test_a_missing_image_is_a_problem_with_setup_as_the_fix(aws_env):
    flags = _stack_resources(aws_env)
    flags["image_uri"] = flags["image_uri"].rsplit(":", 1)[0] + ":not-built"
    c = _checks(**flags)["image"]
    assert c.status == "problem" and "not in ECR" in c.detail and "cloudlora setup" in c.fix


def test_a_missing_role_is_a_problem(aws_env):
    c = _checks(role_arn="arn:aws:iam::123456789012:role/cloudlora-sagemaker-gone")["role"]
    assert c.status == "problem" and "does not exist" in c.detail


def test_a_role_sagemaker_cannot_assume_is_a_problem(aws_env):
    trust = TRUST_SAGEMAKER.replace("sagemaker.amazonaws.com", "ec2.amazonaws.com")
    flags = _stack_resources(aws_env, trust=trust)
    assert _checks(**flags)["role"].status == "problem"


def test_a_role_the_user_may_not_pass_is_a_problem_naming_the_policy(aws_env, stub_service):
    flags = _stack_resources(aws_env)
    iam = stub_service("iam")
    iam.add_response("get_role", {"Role": {"Path": "/", "RoleName": "r", "RoleId": "AROAXXXXXXXXXXXXXXXXX",
                                           "Arn": flags["role_arn"], "CreateDate": "2024-01-01T00:00:00Z",
                                           "AssumeRolePolicyDocument": TRUST_SAGEMAKER}})
    iam.add_response("simulate_principal_policy", {"EvaluationResults": [
        {"EvalActionName": "iam:PassRole", "EvalResourceName": flags["role_arn"], "EvalDecision": "implicitDeny"}]})
    c = _checks(**flags)["pass role"]
    assert c.status == "problem" and "implicitDeny" in c.detail
    assert "iam:PassedToService" in c.fix and "user-policy.json" in c.fix


def test_a_zero_training_quota_is_a_problem_with_the_exact_increase_command(aws_env, stub_service):
    sq = stub_service("service-quotas")
    sq.add_response("list_service_quotas", _quota_page(0, code="L-ABCD1234"), {"ServiceCode": "sagemaker"})
    c = _checks(region="us-east-1")["quota ml.g5.2xlarge"]
    assert c.status == "problem" and "'ml.g5.2xlarge for training job usage' = 0" in c.detail
    assert ("aws service-quotas request-service-quota-increase --service-code sagemaker --quota-code L-ABCD1234 "
            "--desired-value 1 --region us-east-1") in c.fix


def test_quotas_of_each_chosen_instance_type_are_checked(aws_env, stub_service):
    sq = stub_service("service-quotas")
    page = _quota_page(2, "ml.g5.xlarge", "L-1")
    page["Quotas"] += _quota_page(0, "ml.g6e.xlarge", "L-2")["Quotas"]
    sq.add_response("list_service_quotas", page, {"ServiceCode": "sagemaker"})
    checks = {c.name: c for c in doctor.run_checks(settings.resolve({"backend": "sagemaker"}),
                                                   instance_types=["ml.g5.xlarge", "ml.g6e.xlarge"])}
    assert checks["quota ml.g5.xlarge"].status == "ok"
    assert checks["quota ml.g6e.xlarge"].status == "problem" and "L-2" in checks["quota ml.g6e.xlarge"].fix


def test_a_quota_known_only_by_its_default_is_used(aws_env, stub_service):
    sq = stub_service("service-quotas")
    sq.add_response("list_service_quotas", {"Quotas": []}, {"ServiceCode": "sagemaker"})
    sq.add_response("list_aws_default_service_quotas", _quota_page(0), {"ServiceCode": "sagemaker"})
    assert _checks()["quota ml.g5.2xlarge"].status == "problem"


def test_quotas_that_cannot_be_read_name_the_permission_but_are_no_problem(aws_env, stub_service):
    stub_service("service-quotas").add_client_error(
        "list_service_quotas", "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/u is not authorized to perform: servicequotas:ListServiceQuotas", 400)
    c = _checks()["quota ml.g5.2xlarge"]
    assert c.status == "warn" and "servicequotas:ListServiceQuotas" in c.fix


def test_a_complete_setup_has_no_problem_and_exits_0(aws_env, stub_service, monkeypatch, capsys):
    flags = _stack_resources(aws_env)
    settings.save(flags)
    sq = stub_service("service-quotas")
    sq.add_response("list_service_quotas", _quota_page(1), {"ServiceCode": "sagemaker"})
    # this machine's own lines (no GPU here, the trainer venv may be missing) are not what this test is about
    monkeypatch.setattr(doctor, "_LOCAL", [doctor.check_backend, doctor.check_python])
    assert cli_main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_name = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is True
    for name in ("aws credentials", "region", "bucket", "role", "image", "quota ml.g5.2xlarge"):
        assert by_name[name]["status"] == "ok", by_name[name]
    assert by_name["backend"]["detail"].startswith("sagemaker")
    # moto does not simulate policies: the doctor says it could not check, which is not a problem
    assert by_name["pass role"]["status"] in ("ok", "warn")


def test_every_problem_line_carries_a_fix(aws_env, stub_service):
    stub_service("service-quotas").add_response("list_service_quotas", _quota_page(0), {"ServiceCode": "sagemaker"})
    checks = doctor.run_checks(settings.resolve({"bucket": "cloudlora-missing-bucket", "backend": "sagemaker"}))
    problems = [c for c in checks if c.status == "problem"]
    assert {c.name for c in problems} >= {"bucket", "role", "image", "quota ml.g5.2xlarge"}
    assert all(c.fix for c in problems), problems


def _fake_nvidia_smi(tmp_path, monkeypatch, line: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\necho '{line}'\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_the_local_gpu_line_shows_the_gpu_and_its_free_vram(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path, monkeypatch, "NVIDIA H100 80GB HBM3, 81559, 71680")
    c = _checks()["local gpu"]
    assert c.status == "ok" and c.detail == "NVIDIA H100 80GB HBM3: 70.0 GiB free of 79.6 GiB"


def test_a_gpu_with_too_little_free_vram_is_a_warning_with_the_fix(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path, monkeypatch, "NVIDIA GeForce RTX 3060, 12288, 3072")
    c = _checks()["local gpu"]
    assert c.status == "warn" and "3.0 GiB free" in c.detail and "SageMaker" in c.fix


def test_without_any_gpu_local_training_is_a_warning_not_a_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi; the (isolated) trainer venv does not exist either
    checks = _checks()
    assert checks["local gpu"].status == "warn" and "no NVIDIA GPU found" in checks["local gpu"].detail
    assert checks["trainer environment"].status == "warn"  # created by the first local job: not a problem


def test_a_bucket_in_another_region_is_a_problem_because_sagemaker_cannot_read_it(aws_env):
    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket="cloudlora-123456789012-eu-west-1", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    c = _checks(bucket="cloudlora-123456789012-eu-west-1", backend="sagemaker")["bucket"]
    assert c.status == "problem" and "is in eu-west-1, the region is us-east-1" in c.detail
    assert "eu-west-1" in c.fix


def test_a_role_the_user_may_pass_is_ok(aws_env, stub_service):
    flags = _stack_resources(aws_env)
    iam = stub_service("iam")
    iam.add_response("get_role", {"Role": {"Path": "/", "RoleName": "r", "RoleId": "AROAXXXXXXXXXXXXXXXXX",
                                           "Arn": flags["role_arn"], "CreateDate": "2024-01-01T00:00:00Z",
                                           "AssumeRolePolicyDocument": TRUST_SAGEMAKER}})
    iam.add_response("simulate_principal_policy", {"EvaluationResults": [
        {"EvalActionName": "iam:PassRole", "EvalResourceName": flags["role_arn"], "EvalDecision": "allowed"}]}, {
        "PolicySourceArn": "arn:aws:sts::123456789012:user/moto", "ActionNames": ["iam:PassRole"],
        "ResourceArns": [flags["role_arn"]],
        "ContextEntries": [{"ContextKeyName": "iam:PassedToService", "ContextKeyType": "string",
                            "ContextKeyValues": ["sagemaker.amazonaws.com"]}]})
    checks = _checks(**flags)
    assert checks["role"].status == "ok" and checks["pass role"].status == "ok"


def test_an_assumed_role_caller_is_simulated_as_its_role():
    from cloudlora.aws.checks import _caller_principal_arn

    assert _caller_principal_arn({"Arn": "arn:aws:sts::123456789012:assumed-role/Admin/me@example.com"}) == \
        "arn:aws:iam::123456789012:role/Admin"
