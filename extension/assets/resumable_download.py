"""The resumable download of one file over HTTP(S): `download(url, dest_dir, ...)`.

It writes `.cloudlora-fetch-<id>.part` (plus a small .json naming the URL without its secrets (hub_source.redact_url:
a Civitai ?token= is re-supplied by the user's next fetch, never stored), size and expected sha256) in the
destination folder, so the final rename is on one disk; a re-run of the same URL asks the server for the missing
bytes only (HTTP Range, with If-Range on the ETag) and hashes what is already there first. The free space is checked
before a byte is asked for; the sha256, when given, after the last one. The Authorization header never follows a
redirect to another host (hub_source.request: the hub sends file bytes from a CDN with a signed URL).
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import json
import re
import shutil
import threading
import urllib.error
import urllib.parse
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from .. import atomic, private_files
from ..errors import UserError
from .hub_source import Source, http_error, network_error, redact_url, request
from .progress import Cancelled, Meter, ProgressCallback, format_bytes

CHUNK = 1 << 20
DISK_MARGIN = 64 << 20  # what a full disk needs to stay usable after the download


@dataclass
class Downloaded:
    path: Path
    size: int
    sha256: str
    bytes_received: int  # by this run
    resumed_from: int = 0
    checked: bool = False  # the sha256 matched the hub's
    already_there: bool = False


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    m = re.match(r"bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    if m:
        return int(m.group(1)), (None if m.group(2) == "*" else int(m.group(2)))
    m = re.match(r"bytes\s+\*/(\d+)", value or "")
    return (None, int(m.group(1))) if m else (None, None)


def _filename_from(resp, url: str) -> str:
    msg = Message()
    msg["content-disposition"] = resp.headers.get("Content-Disposition", "")
    name = msg.get_filename() or urllib.parse.unquote(urllib.parse.urlsplit(resp.geturl() or url).path
                                                      .rsplit("/", 1)[-1])
    name = Path(name.replace("\\", "/")).name  # never a path from the server
    return re.sub(r'[<>:"|?*\x00-\x1f]', "_", name).strip(" .") or "model.safetensors"


def _hash_existing(path: Path, meter: Meter, cancel) -> "hashlib._Hash":
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled")
            block = f.read(4 << 20)
            if not block:
                return h
            h.update(block)
            meter.add(len(block))


def free_space(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def check_space(folder: Path, total: int | None, have: int, what: str) -> None:
    free = free_space(folder)
    if total is not None and free is not None and free < total - have + DISK_MARGIN:
        raise UserError(f"{what}: not enough disk space in {folder}: it needs {format_bytes(total - have)}, "
                        f"{format_bytes(free)} is free.",
                        "Free some space (or point the checkpoint folder at a larger disk) and run the fetch again: "
                        "what was downloaded is kept.")


def download(url: str, dest_dir: Path, *, name: str = "", size: int | None = None, sha256: str = "",
             token: str = "", source: Source | None = None, progress: ProgressCallback | None = None,
             cancel: threading.Event | None = None) -> Downloaded:
    """Downloads `url` into `dest_dir` and returns a Downloaded (path, size, sha256, bytes received by this run,
    where it resumed from, whether the sha256 was checked, whether the file was already there).

    - `name`: the file name in dest_dir; "" takes the server's (Content-Disposition, else the URL's last segment).
    - `size`: the expected size in bytes (None: unknown). Checked against what the server sends, and with the free
      space before a byte is asked for.
    - `sha256`: the expected hex digest ("" for none); a mismatch removes the bytes and raises UserError.
    - `token`: a bearer token for the server; it never follows a redirect to another host.
    - `source`: the hub_source.Source it came from, only for the wording of errors (None: the URL itself).
    - `progress`: called with progress.Progress (phases "checking the part already downloaded", "downloading",
      "downloaded", "already downloaded").
    - `cancel`: a threading.Event; when set the download stops with progress.Cancelled and the part is kept.

    A partial download of the same URL (`.cloudlora-fetch-<id>.part` in dest_dir) is resumed with HTTP Range: only
    the missing bytes are asked for. A finished file of that name, size and hash is not fetched again. Two fetches
    of one URL on this machine (the tab and the CLI) never append to one partial file: the second waits, then finds
    the file there. Failures (HTTP status, network, full disk, a web page instead of a file) raise UserError with
    the fix."""
    from .. import locks

    def on_wait() -> None:
        Meter(progress, "waiting for another download of this file", size or 0, item=name).emit()

    ident = hashlib.sha256(redact_url(url).encode()).hexdigest()[:32]
    with locks.hold(f"fetch-{ident}", timeout=None, cancel=cancel, on_wait=on_wait):
        return _download(url, dest_dir, name=name, size=size, sha256=sha256, token=token, source=source,
                         progress=progress, cancel=cancel)


def _download(url: str, dest_dir: Path, *, name: str, size: int | None, sha256: str, token: str,
              source: Source | None, progress: ProgressCallback | None, cancel: threading.Event | None) -> Downloaded:
    source = source or Source("url", url=url)
    dest_dir = Path(dest_dir).expanduser()
    dest_dir.mkdir(parents=True, exist_ok=True)  # the host's own folder: its permissions, not a private one
    if name:
        final = dest_dir / name
        if final.is_file() and size is not None and final.stat().st_size == size:
            from . import hashcache

            digest = hashcache.sha256_file(final, cancel=cancel)
            if not sha256 or digest == sha256:
                Meter(progress, "already downloaded", size, done=size, item=final.name).emit()
                return Downloaded(final, size, digest, 0, checked=bool(sha256), already_there=True)
    shown = redact_url(url)  # what the .part's name and .json hold: a ?token= stays in memory, never in a file
    ident = hashlib.sha256(shown.encode()).hexdigest()[:16]
    part = dest_dir / f".cloudlora-fetch-{ident}.part"
    meta_path = part.with_suffix(".json")
    meta = {}
    if part.exists():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        if meta.get("url") != shown or (sha256 and meta.get("sha256") not in ("", sha256)) or \
                (size is not None and meta.get("size") not in (None, size)):
            part.unlink()  # a partial of other bytes: never stitched onto
            meta = {}
    have = part.stat().st_size if part.exists() else 0
    what = f"Downloading {name or source.describe()}"
    hasher = hashlib.sha256()
    if have:
        hasher = _hash_existing(part, Meter(progress, "checking the part already downloaded", have,
                                            item=name or part.name, min_interval=0.2), cancel)
    check_space(dest_dir, size, have, what)  # the hub lists the size: before a byte is asked for
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        if meta.get("etag"):
            headers["If-Range"] = meta["etag"]
    try:
        resp = request(url, token, headers)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing after what we have: the part may be the whole file
            _, total = _content_range(err.headers.get("Content-Range"))
            if total == have:
                return _finish(part, meta_path, dest_dir, meta.get("name") or name, have, hasher, sha256, have, 0,
                               progress)
        raise http_error(err, what, source, bool(token)) from None
    except (urllib.error.URLError, OSError) as err:
        raise network_error(err, what) from None
    with resp:
        start = 0
        if resp.status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != have:
                resp.close()
                part.unlink(missing_ok=True)
                raise UserError(f"{what}: the server resumed at byte {start}, not {have}.",
                                "Run the fetch again: it starts over.")
        else:  # 200: the whole file (no Range support, or the file changed since)
            total = int(resp.headers.get("Content-Length") or 0) or None
            if have:
                hasher, have = hashlib.sha256(), 0
        total = total or size
        if size is not None and total is not None and total != size:
            raise UserError(f"{what}: the server sends {total} bytes, the hub lists {size}.",
                            "Run the fetch again in a while (the file may be changing).")
        ctype = (resp.headers.get("Content-Type") or "").lower()
        if resp.status == 200 and ctype.startswith("text/html"):
            raise UserError(f"{what}: the URL answered with a web page, not a model file (a login or download "
                            "page).", "Use the file's direct download link (Civitai: the api/download/models/ID "
                            "link; add ?token=YOUR_KEY for models that need a login).")
        final_name = name or meta.get("name") or _filename_from(resp, url)
        check_space(dest_dir, total, have, what)
        meta = {"url": shown, "name": final_name, "size": total, "sha256": sha256,
                "etag": resp.headers.get("ETag") or ""}
        private_files.write_text(meta_path, json.dumps(meta))
        meter = Meter(progress, "downloading", total or 0, done=have, item=final_name, min_interval=0.2)
        received = 0
        try:
            with open(part, "ab" if have else "wb", buffering=0) as f:
                while True:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("cancelled")
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    hasher.update(block)
                    received += len(block)
                    meter.add(len(block))
        except http.client.HTTPException as err:  # IncompleteRead and the like: the connection broke
            raise network_error(err, what) from None
        except OSError as err:
            if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
                raise UserError(f"{what}: the disk is full ({dest_dir}) after {format_bytes(have + received)}.",
                                "Free some space and run the fetch again: it resumes from there.") from None
            if isinstance(err, (urllib.error.URLError, TimeoutError, ConnectionError)) or "timed out" in str(err):
                raise network_error(err, what) from None
            raise
    done = have + received
    if total is not None and done != total:
        raise UserError(f"{what}: the connection ended after {format_bytes(done)} of {format_bytes(total)}.",
                        "Run the fetch again: it resumes from there.")
    return _finish(part, meta_path, dest_dir, final_name, done, hasher, sha256, have, received, progress)


def _finish(part: Path, meta_path: Path, dest_dir: Path, final_name: str, size: int, hasher, sha256: str,
            resumed_from: int, received: int, progress) -> Downloaded:
    digest = hasher.hexdigest()
    if sha256 and digest != sha256:
        part.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        raise UserError(f"{final_name}: the downloaded bytes do not match the hub's sha256 ({digest[:12]} instead "
                        f"of {sha256[:12]}); the file was removed.", "Run the fetch again.")
    final = dest_dir / final_name
    atomic.replace(part, final)
    meta_path.unlink(missing_ok=True)
    from . import hashcache

    hashcache.remember(final, digest)  # the upload that follows does not hash gigabytes again
    Meter(progress, "downloaded", size, done=size, item=final_name).emit()
    return Downloaded(final, size, digest, received, resumed_from, checked=bool(sha256))


