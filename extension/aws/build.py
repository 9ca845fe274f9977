"""The trainer image build: skip it when ECR already has the bundle's tag, else upload the bundle, start CodeBuild and
follow its phases and log tail until the image is pushed.
"""
from __future__ import annotations

import time
from typing import Callable

import botocore.exceptions as bx

from ..errors import UserError
from .bundle import Bundle
from .session import error_code

Progress = Callable[[str], None]
BUNDLE_PREFIX = "build/"  # expired by the bucket's lifecycle rule after 30 days


def image_exists(ecr, repository: str, tag: str) -> bool:
    try:
        ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
        return True
    except bx.ClientError as err:
        if error_code(err) == "ImageNotFoundException":
            return False
        raise


def forget_image(ecr, repository: str, tag: str) -> None:
    """Deletes the tag so it can be pushed again: the repository's tags are immutable (a rebuild on request)."""
    ecr.batch_delete_image(repositoryName=repository, imageIds=[{"imageTag": tag}])


def repository_name(repository_uri: str) -> str:
    return repository_uri.split("/", 1)[1]


def upload_bundle(s3, bucket: str, bundle: Bundle) -> str:
    key = f"{BUNDLE_PREFIX}{bundle.tag}.zip"
    s3.put_object(Bucket=bucket, Key=key, Body=bundle.data, ContentType="application/zip",
                  Metadata={"sha256": bundle.content_hash})
    return key


class _LogTail:
    """Reports new lines of the build's CloudWatch log stream (it appears only once the build has a container)."""

    def __init__(self, logs, progress: Progress):
        self.logs, self.progress = logs, progress
        self.token: str | None = None
        self.lines: list[str] = []

    def poll(self, group: str | None, stream: str | None) -> None:
        if not (self.logs and group and stream):
            return
        kwargs = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
        while True:
            if self.token:
                kwargs["nextToken"] = self.token
            try:
                page = self.logs.get_log_events(**kwargs)
            except bx.ClientError as err:
                if error_code(err) == "ResourceNotFoundException":
                    return  # the stream is not created yet
                raise
            for ev in page.get("events", []):
                line = ev.get("message", "").rstrip()
                self.lines = (self.lines + [line])[-40:]
                self.progress(f"build log: {line}")
            new = page.get("nextForwardToken")
            if not page.get("events") or new == self.token:
                self.token = new
                return
            self.token = new


def run_build(codebuild, logs, progress: Progress, *, project: str, bucket: str, key: str, tag: str,
              poll_s: float = 10.0, timeout_s: float = 3600) -> dict:
    """Starts the build of `tag` from s3://bucket/key and follows it; returns the finished build."""
    build = codebuild.start_build(
        projectName=project, sourceTypeOverride="S3", sourceLocationOverride=f"{bucket}/{key}",
        environmentVariablesOverride=[{"name": "IMAGE_TAG", "value": tag, "type": "PLAINTEXT"}])["build"]
    build_id = build["id"]
    progress(f"build: started {build_id}")
    tail = _LogTail(logs, progress)
    reported: set[tuple[str, str]] = set()
    deadline = time.monotonic() + timeout_s
    while True:
        build = codebuild.batch_get_builds(ids=[build_id])["builds"][0]
        for phase in build.get("phases", []):
            key_ = (phase.get("phaseType", ""), phase.get("phaseStatus", "IN_PROGRESS"))
            if key_ not in reported:
                reported.add(key_)
                progress(f"build: phase {key_[0]} {key_[1]}")
        log_info = build.get("logs", {})
        tail.poll(log_info.get("groupName"), log_info.get("streamName"))
        status = build.get("buildStatus", "IN_PROGRESS")
        if status != "IN_PROGRESS":
            break
        if time.monotonic() > deadline:
            raise UserError(f"The image build {build_id} is still running after {timeout_s / 60:.0f} minutes.",
                            "Watch it in the CodeBuild console; run `cloudlora setup` again when it has finished.")
        time.sleep(poll_s)
    if status != "SUCCEEDED":
        failed = [p for p in build.get("phases", []) if p.get("phaseStatus") not in (None, "SUCCEEDED")]
        where = failed[0] if failed else {}
        context = "; ".join(c.get("message", "") for c in where.get("contexts", []) if c.get("message"))
        last = "\n".join(tail.lines[-10:])
        raise UserError(
            f"The trainer image build {status.lower()} in phase {where.get('phaseType', '?')}"
            + (f": {context}" if context else "") + (f"\nLast log lines:\n{last}" if last else ""),
            f"Read the build log (CodeBuild project {project}, build {build_id}); run `cloudlora setup` again "
            "after fixing the cause.")
    progress(f"build: {build_id} succeeded")
    return build
