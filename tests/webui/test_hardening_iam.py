"""No principal but the stack can change a role's trust or the bucket's policy, and iam:PassRole passes only roles
that carry the boundary; tools/iam_policy.py finds each of these paths when it is planted (issue 20, "IAM")."""
from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/cloudlora-boundary"
BUCKET = f"arn:aws:s3:::cloudlora-{ACCOUNT}-us-east-1"
SM_ROLE = f"arn:aws:iam::{ACCOUNT}:role/cloudlora-sagemaker-us-east-1"
CB_ROLE = f"arn:aws:iam::{ACCOUNT}:role/cloudlora-codebuild-us-east-1"
VIA_STACK = {"aws:CalledVia": ["cloudformation.amazonaws.com"]}
TAGGED = {"iam:ResourceTag/cloudlora:boundary": "cloudlora-boundary"}


def _load_tool():
    spec = importlib.util.spec_from_file_location("iam_policy_hardening", ROOT / "tools" / "iam_policy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


iam = _load_tool()


@pytest.fixture(scope="module")
def user():
    return iam.load_json(iam.USER_POLICY)


def test_the_shipped_documents_have_no_path(user):
    assert iam.check_user_policy(user, iam.catalogue_instance_types()) == []
    assert iam.check_template(iam.load_template(), iam.load_json(iam.BOUNDARY)) == []


def test_only_the_stack_changes_a_roles_trust(user):
    boundary = {"iam:PermissionsBoundary": BOUNDARY}
    for role in (SM_ROLE, CB_ROLE):
        assert not iam.allowed(user, "iam:UpdateAssumeRolePolicy", role)
        assert iam.allowed(user, "iam:UpdateAssumeRolePolicy", role, VIA_STACK)
        assert not iam.allowed(user, "iam:CreateRole", role, boundary)  # a trust policy of the user's choosing
        assert iam.allowed(user, "iam:CreateRole", role, {**boundary, **VIA_STACK})
        assert not iam.allowed(user, "iam:CreateRole", role, VIA_STACK)  # still only with the boundary
        for action in ("iam:TagRole", "iam:UntagRole"):
            assert not iam.allowed(user, action, role) and iam.allowed(user, action, role, VIA_STACK)


def test_only_the_stack_writes_the_bucket_policy(user):
    for action in ("s3:PutBucketPolicy", "s3:DeleteBucketPolicy"):
        assert not iam.allowed(user, action, BUCKET), action
        assert iam.allowed(user, action, BUCKET, VIA_STACK), action


def test_passrole_only_for_roles_carrying_the_boundary(user):
    for role, service in ((SM_ROLE, "sagemaker.amazonaws.com"), (CB_ROLE, "codebuild.amazonaws.com")):
        assert iam.allowed(user, "iam:PassRole", role, {"iam:PassedToService": service, **TAGGED})
        assert not iam.allowed(user, "iam:PassRole", role, {"iam:PassedToService": service})
        assert not iam.allowed(user, "iam:PassRole", role, {"iam:PassedToService": service,
                                                            "iam:ResourceTag/cloudlora:boundary": "none"})


def test_the_stack_cannot_import_a_role_or_bucket_to_change_it(user):
    stack = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/cloudlora/x"
    assert iam.allowed(user, "cloudformation:CreateChangeSet", stack)
    for kind in ("AWS::IAM::Role", "AWS::S3::BucketPolicy"):
        assert not iam.allowed(user, "cloudformation:CreateChangeSet", stack,
                               {"cloudformation:ImportResourceTypes": [kind]}), kind


def _statement(doc, sid):
    return next(s for s in doc["Statement"] if s.get("Sid") == sid)


def _plant_trust(doc):  # the report: UpdateAssumeRolePolicy on cloudlora-* roles with no condition
    _statement(doc, "SetupRoleTrustAndTagsOnlyThroughTheStack").pop("Condition")


def _plant_create_role(doc):  # CreateRole accepting any trust policy (the boundary alone)
    _statement(doc, "SetupRolesOnlyWithTheBoundary")["Condition"].pop("ForAnyValue:StringEquals")


def _plant_bucket_policy(doc):
    _statement(doc, "SetupBucket")["Action"] += ["s3:PutBucketPolicy", "s3:DeleteBucketPolicy"]


def _plant_passrole(doc):  # PassRole on any cloudlora-sagemaker-* role, boundary or not
    _statement(doc, "PassExecutionRoleToSageMaker")["Condition"]["StringEquals"].pop(
        "iam:ResourceTag/cloudlora:boundary")


def _plant_tagging(doc):
    _statement(doc, "SetupRoles")["Action"].append("iam:TagRole")


def _plant_import(doc):
    doc["Statement"] = [s for s in doc["Statement"] if s.get("Sid") != "NoImportingRolesOrBucketsIntoTheStack"]


@pytest.mark.parametrize("plant, expected", [
    (_plant_trust, "iam:UpdateAssumeRolePolicy on cloudlora-sagemaker-us-east-1 directly"),
    (_plant_create_role, "iam:CreateRole on cloudlora-codebuild-us-east-1 directly"),
    (_plant_bucket_policy, "s3:PutBucketPolicy on the bucket directly"),
    (_plant_bucket_policy, "s3:DeleteBucketPolicy on the bucket directly"),
    (_plant_passrole, "iam:PassRole of cloudlora-sagemaker-made-by-someone-else to sagemaker.amazonaws.com does "
                      "not require the role to carry the boundary"),
    (_plant_tagging, "iam:TagRole on cloudlora-sagemaker-us-east-1 directly"),
    (_plant_import, "may import an existing AWS::IAM::Role"),
])
def test_the_checker_finds_each_path_when_it_is_planted(user, plant, expected):
    broken = copy.deepcopy(user)
    plant(broken)
    problems = iam.check_user_policy(broken, iam.catalogue_instance_types())
    assert any(expected in p for p in problems), problems


def test_the_checker_finds_a_role_without_the_tag_passrole_needs():
    template = copy.deepcopy(iam.load_template())
    props = template["Resources"]["SageMakerRole"]["Properties"]
    props["Tags"] = [t for t in props["Tags"] if t["Key"] != "cloudlora:boundary"]
    problems = iam.check_template(template, iam.load_json(iam.BOUNDARY))
    assert any("no tag cloudlora:boundary" in p for p in problems), problems
