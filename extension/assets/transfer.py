"""Uploads into the store: resumable multipart uploads with parallel parts, progress (bytes, rate, ETA) and cancel.

Progress, its Meter and Cancelled live in progress.py (re-exported here). s3transfer-style:
cloudlora.assets.tasks.start(...) runs one in the background as a Transfer (result() like a future, cancel()).
`upload_file` is the one place where resume, integrity and dedupe of single objects live:
- S3: our own multipart loop (s3transfer's upload_file cannot resume after the process dies). The UploadId, part
  size and the file's identity (path, size, mtime, sha256) are kept in data_dir()/uploads/<id>.json; a re-run asks
  list_parts and sends only the missing parts, then completes.
- Local store: a chunked copy into `<dest>.partial` that a re-run continues from where it stopped.
- The full-file SHA-256 goes into the object's metadata (S3's multipart checksum is one of the parts, not of the
  file) and is checked with head() after the upload; an object already there with the same hash is not sent again.
- Two uploads to the same object from this machine (two tabs, the tab and the CLI) never share that resume state: the
  second waits for the first (a machine-wide lock per object), then finds the object there and sends nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping

from .. import atomic, private_files
from ..errors import UserError
from ..settings import data_dir
from . import hashcache
from .progress import Cancelled, Meter, Progress, ProgressCallback, format_bytes, format_duration  # noqa: F401

MiB = 1 << 20
GiB = 1 << 30
MIN_PART = 8 * MiB
MAX_PART = 64 * MiB
MAX_PARTS = 10_000
MULTIPART_THRESHOLD = 16 * MiB


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, "") or default))
    except ValueError:
        return default


# Tuning knobs for slow or metered links (README "Cloud Asset Management" → "Checkpoints"); see BENCHMARKS.md "Upload".
DEFAULT_THREADS = _env_int("CLOUDLORA_UPLOAD_THREADS", 8)
PREFERRED_PART = _env_int("CLOUDLORA_PART_SIZE_MIB", 16) * MiB
LOCAL_CHUNK = 8 * MiB


@dataclass
class UploadResult:
    key: str
    size: int
    sha256: str
    bytes_sent: int  # bytes sent by THIS run (0 for a dedupe hit; only the missing parts on resume)
    parts_sent: int = 0
    parts_total: int = 0
    skipped: bool = False  # already in the store with the same hash
    resumed: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def part_size_for(size: int, preferred: int | None = None) -> int:
    """Part size: `preferred` (default 16 MiB) clamped to 8–64 MiB, grown (whole MiB) to keep ≤ 10,000 parts."""
    part = min(max(preferred or PREFERRED_PART, MIN_PART), MAX_PART)
    needed = -(-size // MAX_PARTS)
    if needed > part:
        part = -(-needed // MiB) * MiB
    return part


def uploads_dir() -> Path:
    return data_dir() / "uploads"


def _object_ident(store, key: str) -> str:
    return hashlib.sha256(f"{store.kind}|{getattr(store, 'endpoint', '')}|{store.uri(key)}".encode()).hexdigest()


def _state_path(store, key: str) -> Path:
    return uploads_dir() / f"{_object_ident(store, key)[:24]}.json"


def _read_state(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_state(path: Path, state: dict) -> None:
    from .. import atomic

    private_files.ensure_dir(path.parent)
    atomic.write_text(path, json.dumps(state, indent=2))  # private (0600), and never half-written


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")


def run_parallel(fn: Callable, items: list, threads: int, stop: threading.Event, name: str) -> list:
    """[fn(item) for item in items] on `threads` threads. On the first failure (or Ctrl+C) nothing queued starts,
    only the running calls finish, and the error is raised."""
    if not items:
        return []
    pool = ThreadPoolExecutor(max_workers=max(1, min(threads, len(items))), thread_name_prefix=name)
    futures = [pool.submit(fn, item) for item in items]
    try:
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
        if failed:
            raise failed[0].exception()
        return [f.result() for f in futures]
    except BaseException:
        stop.set()
        for f in futures:
            f.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def upload_file(store, key: str, path: Path | str, *, metadata: Mapping[str, str] | None = None,
                sha256: str | None = None, progress: ProgressCallback | None = None,
                cancel: threading.Event | None = None, threads: int = DEFAULT_THREADS,
                part_size: int | None = None, skip_if_same: bool = True) -> UploadResult:
    """Puts a local file at `key`, resuming an interrupted upload of the same file, skipping an identical object."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is not a file.", "Give the path of an existing file.")
    size = path.stat().st_size
    if sha256 is None:
        hasher = Meter(progress, "hashing", size, item=path.name)
        sha256 = hashcache.sha256_file(path, progress=lambda d, t: hasher.add(d - hasher.done), cancel=cancel)
    from .. import locks

    waited = []

    def on_wait() -> None:  # another upload of this object runs: say so, and look at what it left when it ends
        waited.append(True)
        Meter(progress, "waiting for another upload of this file", size, item=path.name).emit()

    with locks.hold(f"upload-{_object_ident(store, key)[:32]}", timeout=None, cancel=cancel, on_wait=on_wait):
        return _upload_locked(store, key, path, size, sha256, metadata, progress, cancel, threads, part_size,
                              skip_if_same=skip_if_same or bool(waited))


def _upload_locked(store, key, path, size, sha256, metadata, progress, cancel, threads, part_size, *,
                   skip_if_same: bool) -> UploadResult:
    meta = {**dict(metadata or {}), "sha256": sha256}
    if skip_if_same:
        info = store.head(key)
        if info is not None and info.size == size and info.metadata.get("sha256") == sha256:
            Meter(progress, "done", size, done=size, item=path.name).emit()
            return UploadResult(key, size, sha256, 0, skipped=True)
    meter = Meter(progress, "uploading", size, item=path.name)
    if store.kind == "s3":
        result = _s3_upload(store, key, path, size, sha256, meta, meter, cancel, threads, part_size)
    else:
        result = _local_upload(store, key, path, size, sha256, meta, meter, cancel)
    if result.parts_total == 1 and store.kind == "s3":
        meter.emit("done")  # a single PUT: the server has checked its CRC32 and stored the metadata with it
        return result
    meter.emit("verifying")
    info = store.head(key)
    if info is None or info.size != size or info.metadata.get("sha256") != sha256:
        got = "nothing" if info is None else f"{info.size} bytes, sha256 {info.metadata.get('sha256')}"
        raise UserError(f"The upload of {path} to {store.uri(key)} did not verify: expected {size} bytes with "
                        f"sha256 {sha256}, the store has {got}.", "Upload it again; if it repeats, run "
                        "`cloudlora doctor` to check the store.")
    meter.emit("done")
    return result


# --- S3 -----------------------------------------------------------------------------------------------------------


def _list_parts(client, bucket: str, key: str, upload_id: str) -> dict[int, dict]:
    parts: dict[int, dict] = {}
    kwargs = {"Bucket": bucket, "Key": key, "UploadId": upload_id}
    while True:
        resp = client.list_parts(**kwargs)
        for p in resp.get("Parts", []):
            parts[p["PartNumber"]] = p
        if not resp.get("IsTruncated"):
            return parts
        kwargs["PartNumberMarker"] = resp["NextPartNumberMarker"]


def _crc32_of_part(path: Path, offset: int, length: int) -> str:
    """S3's base64 big-endian CRC32 of one part, for servers whose list_parts omits it (SeaweedFS)."""
    import base64
    import zlib

    crc = 0
    with open(path, "rb") as f:
        f.seek(offset)
        left = length
        while left > 0:
            chunk = f.read(min(left, LOCAL_CHUNK))
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
            left -= len(chunk)
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def _part_entry(p: dict) -> dict:
    entry = {"PartNumber": p["PartNumber"], "ETag": p["ETag"]}
    if p.get("ChecksumCRC32"):
        entry["ChecksumCRC32"] = p["ChecksumCRC32"]
    return entry


def _s3_upload(store, key, path, size, sha256, meta, meter, cancel, threads, part_size) -> UploadResult:
    import botocore.exceptions as bx

    client, bucket = store.client, store.bucket
    if size < MULTIPART_THRESHOLD and part_size is None:
        _check_cancel(cancel)
        with open(path, "rb") as body:
            store.put_object(key, body, meta)
        meter.add(size)
        return UploadResult(key, size, sha256, size, 1, 1)

    state_path = _state_path(store, key)
    ident = {**hashcache.identity(path), "sha256": sha256}
    state = _read_state(state_path)
    done: dict[int, dict] = {}
    resumed = False
    if state and state.get("file") == ident and state.get("bucket") == bucket and state.get("key") == key:
        try:
            done = _list_parts(client, bucket, key, state["upload_id"])
            resumed = True
        except bx.ClientError:  # NoSuchUpload: it was completed, aborted or expired; start again
            state = None
    elif state:  # another file (or a changed one) was being sent to this key: drop that upload
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=state["upload_id"])
        except bx.ClientError:
            pass
        state = None
    if not state:
        part = part_size or part_size_for(size)
        # CRC32 per part, like s3transfer; off when the user set AWS_REQUEST_CHECKSUM_CALCULATION=when_required
        # (S3-compatible servers without checksum support, e.g. R2).
        crc = getattr(client.meta.config, "request_checksum_calculation", None) != "when_required"
        resp = store.call("create_multipart_upload", Bucket=bucket, Key=key, Metadata=dict(meta),
                          **({"ChecksumAlgorithm": "CRC32"} if crc else {}))
        state = {"upload_id": resp["UploadId"], "bucket": bucket, "key": key, "part_size": part, "file": ident,
                 "crc32": crc, "created": time.time()}
        _write_state(state_path, state)
    upload_id, part, crc = state["upload_id"], int(state["part_size"]), state.get("crc32", True)
    checksum = {"ChecksumAlgorithm": "CRC32"} if crc else {}
    count = max(1, -(-size // part))
    expected = {n: min(part, size - (n - 1) * part) for n in range(1, count + 1)}
    done = {n: p for n, p in done.items() if expected.get(n) == p.get("Size")}
    missing = [n for n in expected if n not in done]
    meter.done = sum(expected[n] for n in done)
    meter.emit()

    stop = threading.Event()

    def send(n: int) -> dict:
        if stop.is_set():
            raise Cancelled("stopped")
        _check_cancel(cancel)
        with open(path, "rb") as f:
            f.seek((n - 1) * part)
            data = f.read(expected[n])
        resp = store.call("upload_part", Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=data,
                          **checksum)
        meter.add(len(data))
        return {"PartNumber": n, "ETag": resp["ETag"], "ChecksumCRC32": resp.get("ChecksumCRC32")}

    sent = dict(zip(missing, run_parallel(send, missing, threads, stop, "cloudlora-part")))
    _check_cancel(cancel)
    for n, p in done.items():  # complete needs every part's checksum when the upload was created with CRC32
        if crc and not p.get("ChecksumCRC32"):
            p["ChecksumCRC32"] = _crc32_of_part(path, (n - 1) * part, expected[n])
    parts = [_part_entry({**done[n], "PartNumber": n}) if n in done else _part_entry(sent[n]) for n in expected]
    if not crc:
        parts = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]
    store.call("complete_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id,
               MultipartUpload={"Parts": parts})
    try:
        state_path.unlink()
    except OSError:
        pass
    return UploadResult(key, size, sha256, sum(expected[n] for n in sent), len(sent), count, resumed=resumed)


# --- local store --------------------------------------------------------------------------------------------------


def _local_upload(store, key, path, size, sha256, meta, meter, cancel) -> UploadResult:
    dest = store._path(key)
    private_files.ensure_dir(dest.parent)
    partial = dest.with_name(dest.name + ".partial")
    state_path = _state_path(store, key)
    ident = {**hashcache.identity(path), "sha256": sha256}
    state = _read_state(state_path)
    offset = 0
    if state and state.get("file") == ident and partial.exists() and partial.stat().st_size <= size:
        offset = partial.stat().st_size
    else:
        _write_state(state_path, {"key": key, "file": ident, "created": time.time()})
        if partial.exists():
            partial.unlink()
    meter.done = offset
    meter.emit()
    with open(path, "rb") as src, private_files.open_file(partial, "ab" if offset else "wb") as out:
        src.seek(offset)
        while chunk := src.read(LOCAL_CHUNK):
            _check_cancel(cancel)
            out.write(chunk)
            meter.add(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    copied = partial.stat().st_size
    if copied != size:  # never store bytes that are not the source's under the source's sha256
        partial.unlink(missing_ok=True)  # the next try starts over
        raise UserError(f"The copy of {path} into the local store came out {copied} bytes, not {size}: the file "
                        "was changed while it was copied, or the store's disk altered it.",
                        f"Upload it again; if it repeats, check the disk of {store.root}.")
    atomic.replace(partial, dest)
    store._write_meta(dest, meta)
    try:
        state_path.unlink()
    except OSError:
        pass
    return UploadResult(key, size, sha256, size - offset, resumed=offset > 0)
