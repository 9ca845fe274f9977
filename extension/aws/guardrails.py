"""The guardrails `cloudlora setup` relies on and cannot set itself: the roles' permissions boundary, which an
administrator creates once, and the bucket's Block Public Access, which S3 turns on for every new bucket.

The user policy cannot create or change either (that is what makes them guardrails), so setup checks them and says
exactly what an administrator has to run. See docs/security.md.
"""
from __future__ import annotations

from typing import Callable

from botocore.exceptions import ClientError

from ..errors import UserError

BOUNDARY_NAME = "cloudlora-boundary"
BOUNDARY_FILE = "cloud_backend/infra/role-boundary.json"
PUBLIC_ACCESS_SETTINGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


def boundary_arn(account: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account}:policy/{BOUNDARY_NAME}"


def require_boundary(iam, account: str, progress: Callable[[str], None]) -> None:
    """Refuses to start when the boundary policy is missing: the stack's roles could not be created without it."""
    arn = boundary_arn(account)
    try:
        iam.get_policy(PolicyArn=arn)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code == "NoSuchEntity":
            raise UserError(
                f"The permissions boundary {BOUNDARY_NAME} does not exist in account {account}: the stack's roles "
                "must carry it, so that nobody can widen them.",
                "An administrator creates it once: aws iam create-policy --policy-name "
                f"{BOUNDARY_NAME} --policy-document file://{BOUNDARY_FILE}") from err
        if code in ("AccessDenied", "AccessDeniedException"):
            progress(f"warn: could not check the permissions boundary {BOUNDARY_NAME} (iam:GetPolicy denied); "
                     "if the stack fails on the roles, ask an administrator to create it")
            return
        raise
    progress(f"ok: the roles' permissions boundary {arn} exists")


def check_bucket_private(s3, bucket: str, progress: Callable[[str], None]) -> bool:
    """Says whether all four Block Public Access settings are on (S3's default for new buckets); warns otherwise."""
    try:
        config = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("AccessDenied", "AccessDeniedException"):
            progress(f"warn: could not read the Block Public Access settings of {bucket}")
            return False
        config = {}
    off = [k for k in PUBLIC_ACCESS_SETTINGS if not config.get(k)]
    if not off:
        progress(f"ok: Block Public Access is on for {bucket}")
        return True
    progress(f"warn: Block Public Access is not fully on for {bucket} ({', '.join(off)} off). An administrator turns "
             f"it on with: aws s3api put-public-access-block --bucket {bucket} --public-access-block-configuration "
             "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true")
    return False
