"""The S3 store: a bucket on AWS or any S3-compatible endpoint (SeaweedFS, MinIO, R2), through plain boto3.

REFERENCE §3: the CRT transfer client ignores endpoint_url, so downloads force s3transfer's classic client; boto3's
default checksums work with SeaweedFS. Large uploads go through cloudlora.assets.transfer (resumable multipart).
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Iterator, Mapping

from .. import atomic
from ..errors import UserError
from ..settings import Settings
from .base import AlreadyExists, ObjectInfo, ProgressFn, check_key

POOL = 16  # HTTP connections: at least the upload threads
CLIENT_TTL_S = 600.0
_clients: dict[str, tuple[float, object]] = {}
_clients_lock = threading.Lock()
# What a client is made from besides the settings; a change of any of them makes a new one.
_CLIENT_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
               "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE",
               "AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION")


def _client_key(settings: Settings) -> str:
    import hashlib

    files = []
    for var, default in (("AWS_CONFIG_FILE", "~/.aws/config"), ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")):
        path = os.path.expanduser(os.environ.get(var) or default)
        try:
            st = os.stat(path)
            files.append((path, st.st_mtime_ns, st.st_size))
        except OSError:
            files.append((path, 0, -1))
    raw = repr((settings.aws_profile, settings.region, settings.s3_endpoint_url,
                tuple(os.environ.get(v, "") for v in _CLIENT_ENV), tuple(files)))
    return hashlib.sha256(raw.encode()).hexdigest()


def make_client(settings: Settings):
    """An S3 client from the settings (profile, region, endpoint URL, retries), via the shared AWS session module.

    Made once and shared (boto3 clients are thread-safe): making one loads botocore's service model, 0.2-0.5 s of CPU,
    which every REST request and every tab refresh used to pay. A change of the profile, keys, region, endpoint or
    the AWS config files makes a new one; so does age (CLIENT_TTL_S)."""
    from ..aws import session

    key = _client_key(settings)
    now = time.monotonic()
    with _clients_lock:
        hit = _clients.get(key)
        if hit is not None and now - hit[0] < CLIENT_TTL_S:
            return hit[1]
    client = session.client(settings, "s3", max_pool_connections=POOL)
    with _clients_lock:
        for k in [k for k, (t, _c) in _clients.items() if now - t >= CLIENT_TTL_S]:
            del _clients[k]
        _clients[key] = (now, client)
    return client


_conditional = threading.local()  # set while this thread sends a conditional PUT


def _if_none_match_header(request, **_) -> None:
    if getattr(_conditional, "on", False):
        request.headers["If-None-Match"] = "*"


def _is_missing(err) -> bool:
    code = str(err.response.get("Error", {}).get("Code", ""))
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("404", "NoSuchKey", "NotFound") or status == 404


class S3Store:
    kind = "s3"

    def __init__(self, client, bucket: str, settings: Settings | None = None):
        self.client = client
        self.bucket = bucket
        self.settings = settings
        self.endpoint = client.meta.endpoint_url

    @classmethod
    def from_settings(cls, settings: Settings) -> "S3Store":
        if not settings.bucket:
            raise UserError("No S3 bucket is configured.", "Set CLOUDLORA_BUCKET or the bucket in the settings.")
        return cls(make_client(settings), settings.bucket, settings)

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def call(self, operation: str, **kwargs):
        """client.<operation>(**kwargs) with AWS errors turned into UserErrors that say what was being done."""
        from ..aws.session import aws_errors

        with aws_errors(self.settings, service="s3", what=f"{operation} on {self.uri(kwargs.get('Key', ''))}"):
            return getattr(self.client, operation)(**kwargs)

    def put_object(self, key: str, body, metadata: Mapping[str, str] | None = None) -> None:
        self.call("put_object", Bucket=self.bucket, Key=check_key(key), Body=body, Metadata=dict(metadata or {}))

    def put_file(self, key: str, path: Path, *, metadata: Mapping[str, str] | None = None,
                 progress: ProgressFn | None = None) -> None:
        """Resumable multipart for large files; the full-file sha256 lands in the metadata."""
        from ..assets.transfer import upload_file

        cb = (lambda p: progress(p.done, p.total)) if progress else None
        upload_file(self, check_key(key), Path(path), metadata=metadata, progress=cb, skip_if_same=False)

    def put_bytes(self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None,
                  if_absent: bool = False) -> None:
        if not if_absent:
            self.put_object(key, data, metadata)
            return
        self._put_if_absent(key, data, metadata)

    def _put_if_absent(self, key: str, data: bytes, metadata: Mapping[str, str] | None) -> None:
        """A conditional PUT (If-None-Match: *): S3 and SeaweedFS let exactly one of racing writers create the key.

        412 PreconditionFailed: the key exists. 409 ConditionalRequestConflict: another conditional write of the key
        is in flight (S3 asks to retry), after which the retry tells who won.
        """
        import botocore.exceptions as bx

        kwargs = {"Bucket": self.bucket, "Key": check_key(key), "Body": data, "Metadata": dict(metadata or {})}
        if "IfNoneMatch" in self.client.meta.service_model.operation_model("PutObject").input_shape.members:
            kwargs["IfNoneMatch"] = "*"
        else:  # a botocore older than 1.35: the header goes in through a hook, for this thread's call only
            self.client.meta.events.register_first("before-sign.s3.PutObject", _if_none_match_header,
                                                    unique_id="cloudlora-if-none-match")
        _conditional.on = True
        try:
            for attempt in range(6):
                try:
                    self.client.put_object(**kwargs)
                    return
                except bx.ClientError as err:
                    code = str(err.response.get("Error", {}).get("Code", ""))
                    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                    if code == "PreconditionFailed" or status == 412:
                        raise AlreadyExists(f"already in the store: {key}") from None
                    if (code == "ConditionalRequestConflict" or status == 409) and attempt < 5:
                        time.sleep(0.1 * 2 ** attempt)
                        continue
                    from ..aws.session import translate

                    raise (translate(err, settings=self.settings, service="s3", what=f"writing {self.uri(key)}")
                           or err) from err
        finally:
            _conditional.on = False

    def get_bytes(self, key: str) -> bytes:
        import botocore.exceptions as bx

        try:
            return self.client.get_object(Bucket=self.bucket, Key=check_key(key))["Body"].read()
        except bx.ClientError as err:
            if _is_missing(err):
                raise FileNotFoundError(f"not in the store: {key}") from err
            from ..aws.session import translate

            raise (translate(err, settings=self.settings, service="s3", what=f"reading {self.uri(key)}")
                   or err) from err

    def download(self, key: str, dest: Path, *, progress: ProgressFn | None = None) -> None:
        from boto3.s3.transfer import TransferConfig

        info = self.head(key)
        if info is None:
            # A folder of objects (a diffusers model: models/<name>/<folder>): each into dest/<its relative path>.
            prefix = key.rstrip("/") + "/"
            inside = [o for o in self.list(prefix) if not o.key.endswith("/")]
            if not inside:
                raise FileNotFoundError(f"not in the store: {key}")
            total, before = sum(o.size for o in inside), 0
            for o in inside:
                self.download(o.key, Path(dest) / o.key[len(prefix):],
                              progress=(lambda d, t, b=before: progress(b + d, total)) if progress else None)
                before += o.size
            return
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        done = [0]

        def cb(n: int) -> None:
            done[0] += n
            if progress:
                progress(done[0], info.size)

        tmp = dest.with_name(dest.name + ".partial")
        config = TransferConfig(preferred_transfer_client="classic", max_concurrency=8,
                                multipart_chunksize=16 << 20)
        from ..aws.session import aws_errors

        with aws_errors(self.settings, service="s3", what=f"downloading {self.uri(key)}"):
            self.client.download_file(self.bucket, key, str(tmp), Callback=cb, Config=config)
        atomic.replace(tmp, dest)

    def head(self, key: str) -> ObjectInfo | None:
        import botocore.exceptions as bx

        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=check_key(key))
        except bx.ClientError as err:
            if _is_missing(err):
                return None
            from ..aws.session import translate

            raise (translate(err, settings=self.settings, service="s3", what=f"reading {self.uri(key)}")
                   or err) from err
        return ObjectInfo(key, int(resp["ContentLength"]), dict(resp.get("Metadata") or {}))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under the prefix with their sizes (no metadata: that would be one request per object)."""
        from ..aws.session import aws_errors

        with aws_errors(self.settings, service="s3", what=f"listing {self.uri(prefix)}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    yield ObjectInfo(obj["Key"], int(obj["Size"]), {})

    def delete(self, key: str) -> None:
        self.call("delete_object", Bucket=self.bucket, Key=check_key(key))

    def delete_prefix(self, prefix: str) -> int:
        keys = [o.key for o in self.list(prefix)]
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i:i + 1000]]
            self.call("delete_objects", Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)
