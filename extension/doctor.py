"""The doctor: checks everything training needs and says, for each failure, what is wrong and how to fix it.

`run_checks(settings)` is what `cloudlora doctor`, GET /cloudlora/v1/doctor and "Check connection" call. Each check is
a small function returning one or more Check lines; a check that cannot run (its prerequisite failed or the thing is
not configured) says "skip" with the reason.

Decision: missing AWS credentials are a *problem* even for someone who only trains locally (exit 1, with the fix),
because the doctor's job is to say what is missing; the local-backend lines (trainer environment, GPU) still show
whether local training works, so the user can tell the two apart.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from .errors import UserError
from .settings import Settings

STATUSES = ("ok", "problem", "warn", "skip")


@dataclass
class Check:
    name: str
    status: str  # "ok" | "problem" | "warn" | "skip"
    detail: str
    fix: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Context:
    """What the checks share: later AWS checks reuse the session and the caller identity of the first."""

    settings: Settings
    instance_types: list[str]
    session: object = None
    identity: dict | None = None
    region: str = ""
    clients: dict = field(default_factory=dict)
    trainer: dict = field(default_factory=dict)  # trainer_env.status(): torch/cuda/gpu of the trainer's Python

    def client(self, service: str):
        if service not in self.clients:
            from .aws.session import client

            self.clients[service] = client(self.settings, service, session=self.session, fast=True,
                                           region=self.region or None)
        return self.clients[service]


# ---------------------------------------------------------------- this machine

_PACKAGES = ["boto3", "botocore", "tomlkit", "platformdirs", "gradio", "fastapi", "pydantic"]
_MIN_BOTO3 = (1, 34)


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def check_python(ctx: _Context) -> list[Check]:
    py = platform.python_version()
    checks = [Check("python", "ok" if sys.version_info >= (3, 10) else "problem", f"Python {py} ({sys.executable})",
                    "" if sys.version_info >= (3, 10) else "Use Python 3.10 or newer (A1111 recommends 3.10).")]
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    missing = [n for n in ("boto3", "botocore", "tomlkit", "platformdirs") if not versions[n]]
    detail = ", ".join(f"{n} {v}" for n, v in versions.items() if v)
    if missing:
        checks.append(Check("packages", "problem", f"missing: {', '.join(missing)}; found {detail}",
                            f"Install them into this Python: `{sys.executable} -m pip install {' '.join(missing)}` "
                            "(the WebUI's install.py does this on restart)."))
    elif _version_tuple(versions["boto3"]) < _MIN_BOTO3:
        checks.append(Check("packages", "problem", f"boto3 {versions['boto3']} is too old (need >= 1.34); {detail}",
                            f"`{sys.executable} -m pip install -U 'boto3>=1.34,<2'`"))
    else:
        checks.append(Check("packages", "ok", detail))
    return checks


def check_torch(ctx: _Context) -> Check:
    """torch in THIS interpreter (the WebUI's): informative only, the trainer runs in its own environment."""
    if "torch" not in sys.modules and importlib.util.find_spec("torch") is None:
        return Check("torch", "skip", "torch is not installed in this Python; not needed here (the local backend "
                                      "trains in its own environment)")
    try:
        torch = importlib.import_module("torch")
    except Exception as err:  # noqa: BLE001 - a broken torch install must not crash the doctor
        return Check("torch", "warn", f"torch is installed but does not import: {err}")
    parts = [f"torch {torch.__version__}"]
    if torch.cuda.is_available():
        parts.append(f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        parts.append("Apple MPS available")
    else:
        parts.append("no CUDA or MPS device")
    return Check("torch", "ok", ", ".join(parts))


def _nvidia_smi() -> list[tuple[str, int, int]] | None:
    """[(name, total MiB, free MiB)] per GPU from nvidia-smi, or None when there is none."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            gpus.append((parts[0], int(parts[1]), int(parts[2])))
    return gpus or None


# Rough VRAM needs for LoRA training with the default presets (cached latents, gradient checkpointing on SDXL).
_VRAM_SD15_MIB = 6 * 1024
_VRAM_SDXL_MIB = 12 * 1024


def check_gpu(ctx: _Context) -> Check:
    gpus = _nvidia_smi()
    if gpus is None and "torch" in sys.modules:
        torch = sys.modules["torch"]
        try:
            if torch.cuda.is_available():
                free, total = torch.cuda.mem_get_info(0)
                gpus = [(torch.cuda.get_device_name(0), total // 2**20, free // 2**20)]
            elif torch.backends.mps.is_available():
                return Check("local gpu", "ok", "Apple MPS (unified memory) for the local backend")
        except Exception:  # noqa: BLE001 - informative only
            gpus = None
    if not gpus and ctx.trainer.get("cuda"):
        return Check("local gpu", "ok", f"{ctx.trainer.get('gpu') or 'a CUDA GPU'} (seen by the trainer's torch)")
    if not gpus:
        return Check("local gpu", "warn", "no NVIDIA GPU found: local training would run on the CPU (fine for the "
                                          "tiny test models, far too slow for real ones)",
                     "Train on SageMaker (run `cloudlora setup`), or use a machine with an NVIDIA GPU.")
    name, total, free = max(gpus, key=lambda g: g[2])
    detail = f"{name}: {free / 1024:.1f} GiB free of {total / 1024:.1f} GiB"
    if free < _VRAM_SD15_MIB:
        return Check("local gpu", "warn", f"{detail}; SD 1.5 LoRA training needs about 6 GiB free",
                     "Close other GPU programs (the WebUI's loaded model uses VRAM too) or train on SageMaker.")
    if free < _VRAM_SDXL_MIB:
        return Check("local gpu", "ok", f"{detail}; enough for SD 1.5, SDXL needs about 12 GiB free")
    return Check("local gpu", "ok", detail)


def check_trainer_env(ctx: _Context) -> Check:
    """The local backend's own environment (owned by cloudlora.jobs.trainer_env)."""
    try:
        trainer_env = importlib.import_module("cloudlora.jobs.trainer_env")
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("cloudlora.jobs"):
            return Check("trainer environment", "skip", "the local backend is not part of this version")
        raise
    status = trainer_env.status(ctx.settings)
    ctx.trainer = status if isinstance(status, dict) else {}
    return _as_check("trainer environment", status)


def _as_check(name: str, status) -> Check:
    """Adapts trainer_env.status() ({interpreter, managed, ready, torch, cuda, gpu, detail, fix}) to a Check.

    A managed venv that does not exist yet is a warn, not a problem: the first local job creates it."""
    if isinstance(status, Check):
        return status
    get = status.get if isinstance(status, dict) else (lambda k, d=None: getattr(status, k, d))
    state = get("status")
    if state not in STATUSES:
        if get("ready"):
            state = "ok"
        elif get("managed") and get("interpreter") and not Path(str(get("interpreter"))).exists():
            state = "warn"
        else:
            state = "problem"
    detail = get("detail") or (f"{get('interpreter')}" if get("interpreter") else str(status))
    if state == "ok" and get("interpreter") and str(get("interpreter")) not in detail:
        detail = f"{get('interpreter')}: {detail}"
    return Check(name, state, str(detail), str(get("fix") or ""))


# ---------------------------------------------------------------- AWS

def check_credentials(ctx: _Context) -> Check:
    from .aws.session import boto_session, region_of

    ctx.session = boto_session(ctx.settings)
    ctx.region = region_of(ctx.settings, ctx.session)
    # STS answers in any region; without one, ask the global endpoint so the credential check still runs.
    sts = ctx.client("sts") if ctx.region else _sts_global(ctx)
    ident = sts.get_caller_identity()
    ctx.identity = ident
    profile = ctx.settings.aws_profile or "default chain"
    return Check("aws credentials", "ok", f"{ident['Arn']} (account {ident['Account']}, profile {profile})")


def _sts_global(ctx: _Context):
    from .aws.session import client

    return client(ctx.settings, "sts", session=ctx.session, fast=True, region="us-east-1")


def check_region(ctx: _Context) -> Check:
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


def _not_configured(name: str, what: str, ctx: _Context) -> Check:
    if ctx.settings.effective_backend == "sagemaker":
        return Check(name, "problem", f"no {what} configured, but the backend is SageMaker",
                     "Run `cloudlora setup` (or \"Set up AWS\" in Cloud Asset Management).")
    return Check(name, "skip", f"no {what} configured (only needed for SageMaker; `cloudlora setup` creates it)")


def check_bucket(ctx: _Context) -> Check:
    from .aws.session import error_code

    bucket = ctx.settings.bucket
    if not bucket:
        return _not_configured("bucket", "bucket", ctx)
    s3 = ctx.client("s3")
    import botocore.exceptions as bx

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
    if bucket_region and ctx.region and bucket_region != ctx.region and not ctx.settings.s3_endpoint_url:
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


def check_role(ctx: _Context) -> list[Check]:
    import botocore.exceptions as bx

    from .aws.session import error_code

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


def _check_pass_role(ctx: _Context, role_arn: str) -> Check:
    if not ctx.identity:
        return Check("pass role", "skip", "needs credentials")
    principal = _caller_principal_arn(ctx.identity)
    try:
        result = ctx.client("iam").simulate_principal_policy(
            PolicySourceArn=principal, ActionNames=["iam:PassRole"], ResourceArns=[role_arn],
            ContextEntries=[{"ContextKeyName": "iam:PassedToService", "ContextKeyType": "string",
                             "ContextKeyValues": ["sagemaker.amazonaws.com"]}])
    except Exception as err:  # noqa: BLE001 - denied, or an endpoint without the API: then it is just unchecked
        return Check("pass role", "warn", f"could not simulate iam:PassRole for {principal} ({_short(err)}); "
                                          "not checked", "Allow iam:SimulatePrincipalPolicy to let the doctor check it.")
    decisions = [r.get("EvalDecision", "") for r in result.get("EvaluationResults", [])]
    if decisions and all(d == "allowed" for d in decisions):
        return Check("pass role", "ok", f"{principal} may pass the role to SageMaker")
    return Check("pass role", "problem", f"{principal} may not pass {role_arn} to SageMaker "
                                         f"(iam:PassRole: {', '.join(decisions) or 'no decision'})",
                 "Attach cloud_backend/infra/user-policy.json (it allows iam:PassRole on this role with "
                 "iam:PassedToService = sagemaker.amazonaws.com).")


def _short(err: BaseException) -> str:
    text = str(err)
    return text if len(text) < 160 else text[:157] + "..."


_ECR_URI = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([^:@]+)(?::([^@]+))?(?:@(.+))?$")


def parse_image_uri(uri: str) -> dict | None:
    m = _ECR_URI.match(uri)
    if not m:
        return None
    account, region, repo, tag, digest = m.groups()
    return {"account": account, "region": region, "repository": repo, "tag": tag or ("" if digest else "latest"),
            "digest": digest or ""}


def check_image(ctx: _Context) -> Check:
    import botocore.exceptions as bx

    from .aws.session import error_code

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


def check_quotas(ctx: _Context) -> list[Check]:
    from .aws.quotas import QuotaBook

    types = ctx.instance_types
    if not types:
        return []
    import botocore.exceptions as bx

    from .aws.session import error_code, missing_permission

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
            return checks + [Check(name, "warn", f"cannot read Service Quotas ({_short(err)}); not checked")]
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
                                f"For on-demand jobs: `{quota.increase_command(ctx.region)}` or {quota.console_url(ctx.region)}"))
        else:
            checks.append(Check(name, "problem", detail + ": a training job on it cannot start (new accounts often "
                                                          "have 0)",
                                f"Request an increase: `{quota.increase_command(ctx.region)}` "
                                f"(or {quota.console_url(ctx.region)}); AWS usually answers within a day."))
    return checks


def check_backend(ctx: _Context) -> Check:
    s = ctx.settings
    backend = s.effective_backend
    why = "set" if s.backend else ("bucket and role configured" if backend == "sagemaker" else "no AWS stack configured")
    return Check("backend", "ok", f"{backend} ({why})")


# ---------------------------------------------------------------- running them

_LOCAL = [check_backend, check_python, check_torch, check_trainer_env, check_gpu]
_AWS = [check_region, check_bucket, check_role, check_image, check_quotas]


def _run(fn, ctx: _Context) -> list[Check]:
    from .aws.session import translate

    name = fn.__name__.removeprefix("check_").replace("_", " ")
    try:
        out = fn(ctx)
    except UserError as err:
        return [Check(name, "problem", err.message, err.fix or "")]
    except Exception as err:  # noqa: BLE001 - one failing check must not hide the others
        user_err = translate(err, settings=ctx.settings)
        if user_err is not None:
            return [Check(name, "problem", user_err.message, user_err.fix or "")]
        return [Check(name, "problem", f"the check failed unexpectedly: {type(err).__name__}: {_short(err)}",
                      "Please report this with the output of `cloudlora doctor --json`.")]
    return list(out) if isinstance(out, Iterable) and not isinstance(out, Check) else [out]


def run_checks(settings: Settings, *, instance_types: list[str] | None = None) -> list[Check]:
    """Every check, in order: this machine and the local backend first, then AWS."""
    types = list(instance_types) if instance_types else ([settings.instance_type] if settings.instance_type else [])
    ctx = _Context(settings=settings, instance_types=types)
    checks: list[Check] = []
    for fn in _LOCAL:
        checks += _run(fn, ctx)
    creds = _run(check_credentials, ctx)
    for c in creds:
        c.name = "aws credentials"
    checks += creds
    if ctx.identity is None:
        checks += [Check(fn.__name__.removeprefix("check_"), "skip", "needs AWS credentials") for fn in _AWS]
        return checks
    for fn in _AWS:
        if fn is not check_region and not ctx.region:
            checks.append(Check(fn.__name__.removeprefix("check_"), "skip", "needs a region"))
            continue
        checks += _run(fn, ctx)
    return checks


def has_problem(checks: list[Check]) -> bool:
    return any(c.status == "problem" for c in checks)
