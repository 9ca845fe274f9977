"""The shared AWS session: AWS's errors become UserErrors that name the permission or the fix, and nothing ever
prompts (an MFA prompt would hang the WebUI)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import botocore.exceptions as bx
import pytest

from cloudlora.aws import session
from cloudlora.errors import UserError
from cloudlora.settings import Settings


def _client_error(code: str, message: str, operation: str = "PutObject") -> bx.ClientError:
    return bx.ClientError({"Error": {"Code": code, "Message": message}}, operation)


def test_access_denied_names_the_permission_from_the_message():
    err = session.translate(_client_error(
        "AccessDenied", "User: arn:aws:iam::1:user/u is not authorized to perform: s3:PutObject on resource: "
                        "arn:aws:s3:::b/k because no identity-based policy allows the s3:PutObject action"),
        service="s3", what="uploading k")
    assert err.message.startswith("AWS denied s3:PutObject while uploading k")
    assert "s3:PutObject" in err.fix and "user-policy.json" in err.fix


def test_access_denied_without_details_names_service_and_operation():
    err = session.translate(_client_error("AccessDeniedException", "", "CreateTrainingJob"), service="sagemaker")
    assert "sagemaker:CreateTrainingJob" in err.message


def test_an_unknown_profile_says_how_to_create_it():
    with pytest.raises(UserError, match="profile 'nope' is not in your AWS config"):
        session.boto_session(Settings(aws_profile="nope"))


def test_unreachable_endpoints_and_missing_regions_are_explained():
    err = session.translate(bx.EndpointConnectionError(endpoint_url="https://sts.example"), what="checking")
    assert "Cannot reach the AWS endpoint" in err.message and "AWS_ENDPOINT_URL" in err.fix
    assert "No AWS region" in session.translate(bx.NoRegionError()).message


def test_errors_that_are_not_aws_problems_are_left_alone():
    assert session.translate(ValueError("a bug")) is None
    with pytest.raises(ValueError):
        with session.aws_errors():
            raise ValueError("a bug")


def test_the_s3_endpoint_setting_reaches_the_s3_client_only(aws_env):
    s = Settings(region="us-east-1", s3_endpoint_url="http://127.0.0.1:9")
    assert session.client(s, "s3").meta.endpoint_url == "http://127.0.0.1:9"
    assert session.client(s, "sts").meta.endpoint_url == aws_env.endpoint  # AWS_ENDPOINT_URL, honoured by boto3


def test_a_profile_that_needs_an_mfa_code_is_refused_without_prompting(tmp_path):
    config = tmp_path / "config"
    config.write_text("[profile base]\nregion = us-east-1\n\n[profile admin]\nrole_arn = arn:aws:iam::1:role/admin\n"
                      "source_profile = base\nmfa_serial = arn:aws:iam::1:mfa/me\nregion = us-east-1\n")
    (tmp_path / "credentials").write_text("[base]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
                                          "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
               AWS_PROFILE="admin", AWS_EC2_METADATA_DISABLED="true", HOME=str(tmp_path),
               AWS_ENDPOINT_URL="http://127.0.0.1:9")  # nothing may leave the machine, even if it tried
    run = subprocess.run([sys.executable, "-m", "cloudlora", "doctor", "--json", "--backend", "sagemaker"], capture_output=True, text=True,
                         env=env, stdin=subprocess.DEVNULL, timeout=120, start_new_session=True)  # no terminal
    assert run.returncode == 1, run.stderr
    creds = next(c for c in json.loads(run.stdout)["checks"] if c["name"] == "aws credentials")
    assert creds["status"] == "problem" and "asks for an MFA code" in creds["detail"], creds
    assert "aws sso login" in creds["fix"] or "get-session-token" in creds["fix"]
