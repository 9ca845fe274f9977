"""`cloudlora setup`: AWS in one step. Creates or updates the stack, builds the trainer image in the cloud when its
sources changed, and saves bucket, role, image and region into the settings. `delete_stack` undoes it.

Idempotent: a re-run with nothing changed reports "up to date" for the stack and finds the image's content-hash tag
already in ECR, so it neither changes nor builds anything.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from .. import settings as settings_mod
from ..errors import UserError
from ..settings import Settings
from . import build, bundle, guardrails, stack
from .session import aws_errors, boto_session, client, region_of

Progress = Callable[[str], None]


@dataclass
class SetupResult:
    region: str
    bucket: str
    role_arn: str
    image_uri: str
    image_built: bool
    settings_file: str

    def as_dict(self) -> dict:
        return asdict(self)


def _region(settings: Settings, session) -> str:
    region = region_of(settings, session)
    if not region:
        raise UserError("No AWS region is configured, so setup does not know where to create the stack.",
                        "Set the region (Cloud Asset Management, `--region`, or AWS_REGION), e.g. us-east-1.")
    return region


def setup(settings: Settings, *, progress: Progress = print, poll_s: float = 5.0, force_build: bool = False,
          template_body: str | None = None, root=None, clients: dict | None = None) -> SetupResult:
    """`clients` overrides boto3 clients by service name (tests stub CodeBuild, which moto cannot run)."""
    session = boto_session(settings)
    region = _region(settings, session)

    def make(service: str):
        if clients and service in clients:
            return clients[service]
        return client(settings, service, session=session, region=region)

    with aws_errors(settings, service="sts", what="checking the credentials"):
        ident = make("sts").get_caller_identity()
    progress(f"account {ident['Account']} as {ident['Arn']}, region {region}")
    b = bundle.build_bundle(root)  # before the stack: a broken install fails here, before anything changes in AWS
    with aws_errors(settings, service="iam", what="checking the roles' permissions boundary"):
        guardrails.require_boundary(make("iam"), ident["Account"], progress)

    with aws_errors(settings, service="cloudformation", what="deploying the stack"):
        out = stack.deploy(make("cloudformation"), progress, template_body=template_body, poll_s=poll_s)
    missing = [k for k in ("BucketName", "RoleArn", "RepositoryUri") if not out.get(k)]
    if missing:
        raise UserError(f"The stack '{stack.STACK_NAME}' has no outputs {missing}.",
                        "Delete it (`cloudlora setup --delete`) and run `cloudlora setup` again.")
    bucket, role_arn, repo_uri = out["BucketName"], out["RoleArn"], out["RepositoryUri"]
    guardrails.check_bucket_private(make("s3"), bucket, progress)
    # Saved before the image build, so the store works even if the build fails.
    settings_mod.save({"region": region, "bucket": bucket, "role_arn": role_arn})
    progress(f"saved: bucket {bucket}, role {role_arn}, region {region}")

    image_uri = f"{repo_uri}:{b.tag}"
    built = False
    with aws_errors(settings, service="ecr", what="looking for the trainer image"):
        exists = build.image_exists(make("ecr"), build.repository_name(repo_uri), b.tag)
    if exists and not force_build:
        progress(f"image: {image_uri} is up to date (sources unchanged)")
    else:
        if exists:  # --rebuild of a tag ECR has: immutable tags cannot be pushed over, so the old image goes first
            with aws_errors(settings, service="ecr", what="removing the image to rebuild it"):
                build.forget_image(make("ecr"), build.repository_name(repo_uri), b.tag)
            progress(f"image: removed {image_uri} to rebuild it")
        progress(f"image: building {image_uri} from {len(b.files)} files ({len(b.data) / 1e6:.1f} MB bundle)")
        with aws_errors(settings, service="s3", what="uploading the build bundle"):
            key = build.upload_bundle(make("s3"), bucket, b)
        with aws_errors(settings, service="codebuild", what="building the trainer image"):
            # moto's CloudFormation has no CodeBuild projects; the name is fixed by the template anyway
            project = out.get("BuildProject") or f"{stack.STACK_NAME}-trainer-build"
            build.run_build(make("codebuild"), make("logs"), progress, project=project, bucket=bucket,
                            key=key, tag=b.tag, poll_s=max(poll_s, 0.0) * 2)
        built = True
    path = settings_mod.save({"image_uri": image_uri})
    progress(f"done: image {image_uri}; settings saved to {path}")
    return SetupResult(region, bucket, role_arn, image_uri, built, str(path))


def _bucket_contents(s3, bucket: str) -> tuple[int, int]:
    count = size = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []):
            count += 1
            size += v.get("Size", 0)
        count += len(page.get("DeleteMarkers", []))
    return count, size


def empty_bucket(s3, bucket: str, progress: Progress) -> int:
    """Deletes every object version and aborts unfinished uploads; returns how many objects went."""
    deleted = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        items = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                 for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        for i in range(0, len(items), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": items[i:i + 1000], "Quiet": True})
            deleted += len(items[i:i + 1000])
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for up in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
    progress(f"bucket: {bucket} emptied ({deleted} objects)")
    return deleted


def delete_stack(settings: Settings, *, confirm: Callable[[str], bool], progress: Progress = print,
                 poll_s: float = 5.0) -> bool:
    """Removes the stack (bucket, role, repository, build project). Asks `confirm` before emptying a non-empty
    bucket; returns False (nothing deleted) when the answer is no."""
    session = boto_session(settings)
    region = _region(settings, session)
    cfn = client(settings, "cloudformation", session=session, region=region)
    with aws_errors(settings, service="cloudformation", what="reading the stack"):
        current = stack.describe(cfn)
    if current is None:
        progress(f"stack: {stack.STACK_NAME} does not exist in {region}; nothing to delete")
        _forget(settings, {})
        return True
    out = stack.outputs(current)
    bucket = out.get("BucketName", "")
    if bucket:
        s3 = client(settings, "s3", session=session, region=region)
        with aws_errors(settings, service="s3", what=f"listing the bucket {bucket}"):
            try:
                count, size = _bucket_contents(s3, bucket)
            except Exception as err:  # noqa: BLE001 - a bucket already gone is fine
                if "NoSuchBucket" not in str(err):
                    raise
                count, size = 0, 0
        if count:
            question = (f"Delete the bucket {bucket} with everything in it ({count} objects, {size / 1e9:.2f} GB: "
                        "models, datasets, job outputs)?")
            if not confirm(question):
                progress("nothing deleted")
                return False
            with aws_errors(settings, service="s3", what=f"emptying the bucket {bucket}"):
                empty_bucket(s3, bucket, progress)
    with aws_errors(settings, service="cloudformation", what="deleting the stack"):
        stack.delete(cfn, progress, poll_s=poll_s)
    _forget(settings, out)
    return True


def _forget(settings: Settings, out: dict) -> None:
    """Clears the saved settings that pointed at the deleted stack (never ones the user set to something else)."""
    current = settings_mod.read_file()
    pairs = {"bucket": out.get("BucketName"), "role_arn": out.get("RoleArn")}
    updates = {k: "" for k, v in pairs.items() if v and current.get(k) == v}
    repo = out.get("RepositoryUri")
    if repo and current.get("image_uri", "").startswith(repo + ":"):
        updates["image_uri"] = ""
    if updates:
        settings_mod.save(updates)
