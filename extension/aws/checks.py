"""The doctor's AWS checks: credentials, region, bucket, role (and passing it), image, training quotas.

Each takes the doctor's context (settings, the boto3 session and caller identity found by the credentials check) and
returns one or more Check lines; see cloudlora.doctor for how they run.
"""
from __future__ import annotations

import re

import botocore.exceptions as bx

from ..check_lines import Check, CheckContext, short_error
from .session import error_code, missing_permission


def check_credentials(ctx: CheckContext) -> Check:
    from .session import boto_session, region_of

    ctx.session = boto_session(ctx.settings)
    ctx.region = region_of(ctx.settings, ctx.session)
    # STS answers in any region; without one, ask the global endpoint so the credential check still runs.
    sts = ctx.client("sts") if ctx.region else _sts_global(ctx)
    ident = sts.get_caller_identity()
    ctx.identity = ident
    profile = ctx.settings.aws_profile or "default chain"
    return Check("aws credentials", "ok", f"{ident['Arn']} (account {ident['Account']}, profile {profile})")


def _sts_global(ctx: CheckContext):
    from .session import client

    return client(ctx.settings, "sts", session=ctx.session, fast=True, region="us-east-1")


def check_region(ctx: CheckContext) -> Check:
    if not ctx.region:
        return Check("region", "problem", "no AWS region configured",
                     "Set the region in Cloud Asset Management or the settings (e.g. us-east-1), "
                     "or `aws configure set region us-east-1 --profile NAME`, or AWS_REGION.")
    known = ctx.session.get_available_regions("sagemaker")
    if known and ctx.region not in known:
        return Check("region", "problem", f"'{ctx.region}' is not a region where SageMaker runs",
                     f"Use one of: {', '.join(sorted(known)[:12])}, ...")
    source = ctx.settings.sources.get("region", "profile") if ctx.settings.region else "profile"
    return Check("region", "ok", f"{ctx.region} (from {source})")


def _not_configured(name: str, what: str, ctx: CheckContext) -> Check:
    if ctx.settings.effective_backend == "sagemaker":
        return Check(name, "problem", f"no {what} configured, but the backend is SageMaker",
                     "Run `cloudlora setup` (or \"Set up AWS\" in Cloud Asset Management).")
    return Check(name, "skip", f"no {what} configured (only needed for SageMaker; `cloudlora setup` creates it)")


def check_bucket(ctx: CheckContext) -> Check:
    bucket = ctx.settings.bucket
    if not bucket:
        return _not_configured("bucket", "bucket", ctx)
    s3 = ctx.client("s3")
    kwargs = {"Bucket": bucket}
    if ctx.identity and not ctx.settings.s3_endpoint_url:
        kwargs["ExpectedBucketOwner"] = ctx.identity["Account"]  # "ours": S3 answers 403 for another account's
    try:
        head = s3.head_bucket(**kwargs)
    except bx.ClientError as err:
        code = error_code(err)
        if code in ("404", "NoSuchBucket", "NotFound"):
            return Check("bucket", "problem", f"the bucket '{bucket}' does not exist",
                         "Run `cloudlora setup` to create it, or fix the bucket setting.")
        if code in ("403", "AccessDenied", "Forbidden"):
            return Check("bucket", "problem", f"the bucket '{bucket}' exists but this account cannot use it (it "
                                              "belongs to another account, or s3:ListBucket is not allowed)",
                         "Use the bucket `cloudlora setup` created (its name is in the stack outputs), or attach "
                         "cloud_backend/infra/user-policy.json to your IAM user.")
        raise
    bucket_region = (head.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
                     or head.get("BucketRegion") or "")
    # SageMaker reads buckets of its own region only; an S3-compatible store for local training has no such rule.
    matters = ctx.settings.effective_backend == "sagemaker" or not ctx.settings.s3_endpoint_url
    if bucket_region and ctx.region and bucket_region != ctx.region and matters:
        return Check("bucket", "problem", f"the bucket '{bucket}' is in {bucket_region}, the region is {ctx.region}; "
                                          "SageMaker reads only buckets in its own region",
                     f"Set the region to {bucket_region}, or run `cloudlora setup` in {ctx.region}.")
    return Check("bucket", "ok", f"s3://{bucket} reachable" + (f" ({bucket_region})" if bucket_region else ""))


def _caller_principal_arn(identity: dict) -> str:
    """sts assumed-role ARNs are not IAM principals; SimulatePrincipalPolicy needs the role's ARN."""
    arn = identity["Arn"]
    m = re.match(r"arn:([\w-]+):sts::(\d+):assumed-role/([^/]+)/", arn)
    if m:
        return f"arn:{m.group(1)}:iam::{m.group(2)}:role/{m.group(3)}"
    return arn


def check_role(ctx: CheckContext) -> list[Check]:
    role_arn = ctx.settings.role_arn
    if not role_arn:
        return [_not_configured("role", "SageMaker execution role", ctx)]
    name = role_arn.rsplit("/", 1)[-1]
    iam = ctx.client("iam")
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except bx.ClientError as err:
        code = error_code(err)
        if code == "NoSuchEntity":
            return [Check("role", "problem", f"the role {role_arn} does not exist",
                          "Run `cloudlora setup` (it creates the role), or fix the role ARN setting.")]
        if code in ("AccessDenied", "AccessDeniedException"):
            return [Check("role", "warn", f"cannot read the role {role_arn} (iam:GetRole not allowed); not checked")]
        raise
    trust = str(role.get("AssumeRolePolicyDocument", ""))
    checks = []
    if "sagemaker.amazonaws.com" not in trust:
        checks.append(Check("role", "problem", f"the role {role_arn} does not trust sagemaker.amazonaws.com",
                            "Use the role `cloudlora setup` created (stack output RoleArn)."))
    else:
        checks.append(Check("role", "ok", f"{role_arn} exists and trusts SageMaker"))
    checks.append(_check_pass_role(ctx, role_arn))
    return checks


BOUNDARY_TAG = "cloudlora:boundary"  # set on its roles by the stack (cloud_backend/infra/template.yaml)


def _check_pass_role(ctx: CheckContext, role_arn: str) -> Check:
    if not ctx.identity:
        return Check("pass role", "skip", "needs credentials")
    principal = _caller_principal_arn(ctx.identity)
    context = [{"ContextKeyName": "iam:PassedToService", "ContextKeyType": "string",
                "ContextKeyValues": ["sagemaker.amazonaws.com"]}]
    try:  # the user policy passes only roles the stack tagged (they carry the boundary); the simulation needs the tag
        tags = ctx.client("iam").get_role(RoleName=role_arn.rsplit("/", 1)[-1])["Role"].get("Tags") or []
        context += [{"ContextKeyName": f"iam:ResourceTag/{t['Key']}", "ContextKeyType": "string",
                     "ContextKeyValues": [t["Value"]]} for t in tags if t.get("Key") == BOUNDARY_TAG]
    except Exception:  # noqa: BLE001 - the role check above names a missing role; simulate without its tags
        pass
    try:
        result = ctx.client("iam").simulate_principal_policy(
            PolicySourceArn=principal, ActionNames=["iam:PassRole"], ResourceArns=[role_arn],
            ContextEntries=context)
    except Exception as err:  # noqa: BLE001 - denied, or an endpoint without the API: then it is just unchecked
        return Check("pass role", "warn", f"could not simulate iam:PassRole for {principal} ({short_error(err)}); "
                                          "not checked",
                     "Allow iam:SimulatePrincipalPolicy to let the doctor check it.")
    decisions = [r.get("EvalDecision", "") for r in result.get("EvaluationResults", [])]
    if decisions and all(d == "allowed" for d in decisions):
        return Check("pass role", "ok", f"{principal} may pass the role to SageMaker")
    return Check("pass role", "problem", f"{principal} may not pass {role_arn} to SageMaker "
                                         f"(iam:PassRole: {', '.join(decisions) or 'no decision'})",
                 "Attach cloud_backend/infra/user-policy.json (it allows iam:PassRole on this role with "
                 "iam:PassedToService = sagemaker.amazonaws.com, when the role has the stack's tag "
                 f"{BOUNDARY_TAG}; `cloudlora setup` updates an older stack so its roles have it).")


_ECR_URI = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([^:@]+)(?::([^@]+))?(?:@(.+))?$")


def parse_image_uri(uri: str) -> dict | None:
    m = _ECR_URI.match(uri)
    if not m:
        return None
    account, region, repo, tag, digest = m.groups()
    return {"account": account, "region": region, "repository": repo, "tag": tag or ("" if digest else "latest"),
            "digest": digest or ""}


def check_image(ctx: CheckContext) -> Check:
    uri = ctx.settings.image_uri
    if not uri:
        return _not_configured("image", "trainer image", ctx)
    parts = parse_image_uri(uri)
    if parts is None:
        return Check("image", "warn", f"{uri} is not an ECR image URI; SageMaker needs the image in ECR",
                     "Run `cloudlora setup`, which builds the trainer image into your ECR repository.")
    if ctx.region and parts["region"] != ctx.region:
        return Check("image", "problem", f"the image is in {parts['region']}, the region is {ctx.region}; SageMaker "
                                         "pulls only from its own region", "Run `cloudlora setup` in this region.")
    image_id = {"imageDigest": parts["digest"]} if parts["digest"] else {"imageTag": parts["tag"]}
    try:
        ctx.client("ecr").describe_images(registryId=parts["account"], repositoryName=parts["repository"],
                                          imageIds=[image_id])
    except bx.ClientError as err:
        code = error_code(err)
        if code == "ImageNotFoundException":
            return Check("image", "problem", f"the image {uri} is not in ECR (not built yet, or expired)",
                         "Run `cloudlora setup`: it rebuilds and pushes the trainer image.")
        if code == "RepositoryNotFoundException":
            return Check("image", "problem", f"the ECR repository {parts['repository']} does not exist",
                         "Run `cloudlora setup` to create it and build the image.")
        raise
    return Check("image", "ok", f"{uri} exists")


def check_quotas(ctx: CheckContext) -> list[Check]:
    from .quotas import QuotaBook

    types = ctx.instance_types
    if not types:
        return []
    book = QuotaBook(ctx.client("service-quotas"))
    checks = []
    for itype in types:
        name = f"quota {itype}"
        try:
            quota = book.training(itype)
        except bx.ClientError as err:
            if error_code(err) in ("AccessDenied", "AccessDeniedException"):
                perm = missing_permission(err, "servicequotas")
                return checks + [Check(name, "warn", f"cannot read Service Quotas ({perm} not allowed); not checked",
                                       f"Allow {perm} (it is in cloud_backend/infra/user-policy.json).")]
            return checks + [Check(name, "warn", f"cannot read Service Quotas ({short_error(err)}); not checked")]
        if quota is None:
            checks.append(Check(name, "warn", f"no Service Quota named '{itype} for training job usage' (is "
                                              f"{itype} a SageMaker training instance type?)"))
            continue
        spot = book.training(itype, spot=True)
        spot_text = f", spot {spot.value:g}" if spot else ""
        detail = f"'{quota.name}' = {quota.value:g}{spot_text} (quota code {quota.code})"
        if quota.value >= 1:
            checks.append(Check(name, "ok", detail))
        elif spot and spot.value >= 1:
            checks.append(Check(name, "warn", detail + ": only spot training jobs can start",
                                f"For on-demand jobs: `{quota.increase_command(ctx.region)}` or "
                                f"{quota.console_url(ctx.region)}"))
        else:
            checks.append(Check(name, "problem", detail + ": a training job on it cannot start (new accounts often "
                                                          "have 0)",
                                f"Request an increase: `{quota.increase_command(ctx.region)}` "
                                f"(or {quota.console_url(ctx.region)}); AWS usually answers within a day."))
    return checks
