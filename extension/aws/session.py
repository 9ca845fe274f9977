"""One place that makes boto3 sessions and clients from the settings, and turns botocore errors into UserErrors.

Why one place: the profile, region, endpoint overrides (tests, S3-compatible stores), retries and timeouts must be
the same for the store, the jobs, setup and the doctor, and every AWS failure must reach the user in words with a fix.
Credentials only ever come from AWS's own chain; nothing here reads stdin (an MFA prompt would hang a server).
"""
from __future__ import annotations

import contextlib
import re
from typing import Iterator

import boto3
import botocore.exceptions as bx
from botocore.config import Config

from ..errors import UserError
from ..settings import Settings

USER_AGENT = "cloudlora"

# Services that the endpoint-URL settings/env apply to. boto3 itself honours AWS_ENDPOINT_URL and
# AWS_ENDPOINT_URL_<SERVICE>; settings.s3_endpoint_url (which may come from the settings file) is added for S3.
_INVALID_KEY_CODES = {"InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException",
                      "InvalidAccessKeyId", "AuthFailure", "IncompleteSignature"}
_EXPIRED_CODES = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
_DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError",
                 "AuthorizationErrorException", "Forbidden", "403"}


def _no_mfa_prompt(prompt: str = "") -> str:
    raise UserError(
        "This AWS profile asks for an MFA code, which the extension cannot prompt for (it would hang the WebUI).",
        "Get temporary credentials first (e.g. `aws sts get-session-token --serial-number ARN --token-code CODE` "
        "into a profile, or `aws sso login`), then use that profile.",
    )


def boto_session(settings: Settings) -> boto3.Session:
    """A boto3 session for the configured profile and region, with MFA prompting disabled."""
    try:
        session = boto3.Session(profile_name=settings.aws_profile or None, region_name=settings.region or None)
    except bx.ProfileNotFound as err:
        raise translate(err, settings=settings) from err
    try:
        provider = session._session.get_component("credential_provider").get_provider("assume-role")
        provider._prompter = _no_mfa_prompt  # botocore's default is getpass.getpass (reads the terminal)
    except Exception:  # noqa: BLE001 - a botocore without that provider simply has no prompt to disable
        pass
    return session


def region_of(settings: Settings, session: boto3.Session | None = None) -> str:
    """The region from the settings, else the profile's; "" when none is configured."""
    if settings.region:
        return settings.region
    try:
        return (session or boto_session(settings)).region_name or ""
    except UserError:
        return ""


def client_config(*, fast: bool = False, **overrides) -> Config:
    """Standard retries; `fast` for interactive checks (the doctor) so a dead endpoint answers in seconds."""
    if fast:
        base = dict(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=20)
    else:
        base = dict(retries={"max_attempts": 8, "mode": "standard"}, connect_timeout=10, read_timeout=60)
    base.update(overrides)
    return Config(user_agent_extra=USER_AGENT, **base)


def client(settings: Settings, service: str, *, session: boto3.Session | None = None, fast: bool = False,
           region: str | None = None, **config_overrides):
    """A boto3 client for `service` from the settings (profile, region, endpoint URLs, retries, timeouts)."""
    session = session or boto_session(settings)
    kwargs = {"config": client_config(fast=fast, **config_overrides)}
    region = region or region_of(settings, session)
    if region:
        kwargs["region_name"] = region
    if service == "s3" and settings.s3_endpoint_url:
        kwargs["endpoint_url"] = settings.s3_endpoint_url
    try:
        return session.client(service, **kwargs)
    except Exception as err:  # noqa: BLE001 - credential / region resolution errors surface here
        user_err = translate(err, settings=settings)
        if user_err is None:
            raise
        raise user_err from err


def _profile_hint(settings: Settings | None) -> str:
    return (settings.aws_profile if settings and settings.aws_profile else "") or "default"


_PERMISSION_RE = re.compile(r"not authorized to perform:? ([A-Za-z0-9-]+:[A-Za-z0-9*]+)")


def missing_permission(err: bx.ClientError, service_prefix: str | None = None) -> str:
    """The IAM action an AccessDenied names (from AWS's message), else service:Operation."""
    message = err.response.get("Error", {}).get("Message", "") or ""
    m = _PERMISSION_RE.search(message)
    if m:
        return m.group(1)
    prefix = service_prefix or "aws"
    return f"{prefix}:{err.operation_name}" if err.operation_name else prefix


def error_code(err: BaseException) -> str:
    if isinstance(err, bx.ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    return ""


def translate(err: BaseException, *, settings: Settings | None = None, service: str | None = None,
              what: str = "") -> UserError | None:
    """The UserError for an AWS failure, or None when it is not one we can explain (a bug: let it raise)."""
    profile = _profile_hint(settings)
    doing = f" while {what}" if what else ""
    if isinstance(err, UserError):
        return err
    if isinstance(err, bx.ProfileNotFound):
        return UserError(
            f"The AWS profile '{err.kwargs.get('profile', profile)}' is not in your AWS config or credentials file.",
            "Create it with `aws configure --profile NAME` (or \"Add access key\" in Cloud Asset Management), "
            "or pick an existing profile in the settings.",
        )
    if isinstance(err, (bx.UnauthorizedSSOTokenError, bx.SSOTokenLoadError, bx.TokenRetrievalError)):
        return UserError(f"The AWS SSO session of profile '{profile}' has expired or is not logged in{doing}.",
                         f"Run `aws sso login --profile {profile}`, then try again.")
    if isinstance(err, bx.NoCredentialsError):
        return UserError(
            f"No AWS credentials found (profile '{profile}', environment variables, SSO or an instance role){doing}.",
            "Run `aws configure --profile NAME` and select that profile, or use \"Add access key\" in Cloud Asset "
            "Management, or `aws sso login --profile NAME` for SSO. Local training needs no AWS.",
        )
    if isinstance(err, bx.PartialCredentialsError):
        return UserError(f"The AWS credentials are incomplete: {err}.",
                         "Set both the access key id and the secret access key (`aws configure --profile NAME`).")
    if isinstance(err, (bx.CredentialRetrievalError, bx.SSOError)):
        return UserError(f"AWS credentials could not be loaded for profile '{profile}': {err}",
                         f"Check the profile in your AWS config; for SSO run `aws sso login --profile {profile}`.")
    if isinstance(err, bx.NoRegionError):
        return UserError("No AWS region is configured.",
                         "Set the region in Cloud Asset Management or the settings (e.g. us-east-1), or AWS_REGION.")
    if isinstance(err, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError)):
        return UserError(f"Cannot reach the AWS endpoint{doing}: {err}",
                         "Check the network connection, the region and any endpoint URL setting "
                         "(AWS_ENDPOINT_URL*, S3 endpoint URL).")
    if isinstance(err, bx.ClientError):
        code = error_code(err)
        message = err.response.get("Error", {}).get("Message", "") or code
        endpoint = _compatible_endpoint(settings, service)
        if endpoint and (code in _INVALID_KEY_CODES or code in _DENIED_CODES):
            # Not AWS: no IAM console, no user-policy.json. A HEAD answers a bare 403 for a wrong key too.
            return UserError(f"The S3-compatible server at {endpoint} refused the request{doing} ({code}): the "
                             "access key or secret is wrong for that server, or that key may not use this bucket.",
                             "Check the access key and secret (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the "
                             f"profile '{profile}') against that server's own users, and the bucket's access rules "
                             "there.")
        if code in _INVALID_KEY_CODES:
            return UserError(f"AWS rejected the access key of profile '{profile}' ({code}): the key id or secret is "
                             "wrong, or the key was deleted.",
                             "Create a new access key in the IAM console and save it with \"Add access key\" or "
                             "`aws configure --profile NAME`.")
        if code in _EXPIRED_CODES:
            return UserError(f"The AWS session credentials of profile '{profile}' have expired ({code}).",
                             f"Refresh them: `aws sso login --profile {profile}` for SSO, otherwise get new "
                             "temporary credentials (or use a long-term access key).")
        if code in _DENIED_CODES:
            permission = missing_permission(err, service)
            return UserError(f"AWS denied {permission}{doing}: {message}",
                             f"Give your IAM user or role the permission {permission} (attach "
                             "cloud_backend/infra/user-policy.json, see docs/aws.md).")
        return UserError(f"AWS error{doing}: {code}: {message}",
                         "See the message above; `cloudlora doctor` checks the whole AWS configuration.")
    return None


def _compatible_endpoint(settings: Settings | None, service: str | None) -> str:
    """The S3 endpoint URL when the store is an S3-compatible server (SeaweedFS, MinIO, R2), not AWS; else ""."""
    url = (settings.s3_endpoint_url if settings else "") or ""
    if service != "s3" or not url or re.search(r"\.amazonaws\.com(\.cn)?(:\d+)?/?$", url.split("?")[0]):
        return ""
    return url


@contextlib.contextmanager
def aws_errors(settings: Settings | None = None, *, service: str | None = None, what: str = "") -> Iterator[None]:
    """Runs the block, turning botocore failures into UserErrors (unknown errors propagate unchanged)."""
    try:
        yield
    except (bx.BotoCoreError, bx.ClientError) as err:
        user_err = translate(err, settings=settings, service=service, what=what)
        if user_err is None:
            raise
        raise user_err from err
