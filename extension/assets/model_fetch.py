"""A base model in one step: fetch a checkpoint from Hugging Face or any https URL into the host's checkpoint
folder, resumable and checked, then the same family check and upload as any checkpoint (models.upload_model).

Plain urllib against the hub's HTTP API (`/api/models/<repo>/revision/<rev>?blobs=true` for the file list, sizes and
LFS sha256; `/<repo>/resolve/<rev>/<file>` for the bytes), because the WebUI venvs carry huggingface_hub from 0.19 to
1.x and this needs none of it. HF_ENDPOINT is honoured as huggingface_hub does, which is also how tests point it at a
local server.

A download writes `.cloudlora-fetch-<id>.part` (plus a small .json naming the URL, size and expected sha256) in the
destination folder, so the final rename is on one disk; a re-run of the same source asks the server for the missing
bytes only (HTTP Range) and hashes what is already there first. The Authorization header never follows a redirect to
another host (the hub sends file bytes from a CDN with a signed URL).
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import re
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from .. import atomic, host, private_files
from ..errors import UserError
from . import hub_token, known_bases
from .progress import Cancelled, Meter, ProgressCallback, format_bytes

CHUNK = 1 << 20
TIMEOUT = 60
DISK_MARGIN = 64 << 20  # what a full disk needs to stay usable after the download
REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
CHECKPOINT_EXTS = (".safetensors", ".ckpt")
# Files in a repo's root that are not a base model (FLUX's ae.safetensors, VAEs, LoRAs, text encoders, refiners).
NOT_A_BASE = re.compile(r"(^|[_.-])(ae|vae|lora|clip|clip_[lg]|t5|t5xxl|te|refiner|inpainting|inpaint)([_.-]|$)",
                        re.IGNORECASE)


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


@dataclass(frozen=True)
class Source:
    """What to fetch: a hub repo (and file, "" to pick its single-file checkpoint) or a plain URL."""
    kind: str  # "hub" | "url"
    repo: str = ""
    file: str = ""
    revision: str = "main"
    url: str = ""

    def describe(self) -> str:
        if self.kind == "url":
            return self.url
        return f"{self.repo}" + (f" / {self.file}" if self.file else "") + \
            (f" @ {self.revision}" if self.revision != "main" else "")


def _loopback(host_name: str) -> bool:
    return host_name in ("127.0.0.1", "localhost", "::1")


def parse_source(text: str, file: str | None = None, revision: str | None = None) -> Source:
    """'org/repo' (+ file), 'org/repo/path/file.safetensors', a known base's key ('sd15'), a hub URL, or any https
    URL (Civitai's api/download/models/ID)."""
    text = (text or "").strip()
    file = (file or "").strip().lstrip("/")
    revision = (revision or "").strip() or "main"
    if not text:
        raise UserError("Give a model to fetch.", "A Hugging Face repo id (org/repo, with --file NAME.safetensors), "
                        "an https URL, or one of: " + ", ".join(b.key for b in known_bases.BASES) + ".")
    known = known_bases.by_key(text)
    if known is not None:
        return Source("hub", known.repo, file or known.file, revision)
    if "://" in text:
        parts = urllib.parse.urlsplit(text)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise UserError(f"'{text}' is not an https URL.", "Give an https:// link to the model file.")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise UserError(f"'{text}' is a plain http URL: what it sends could be changed on the way.",
                            "Use its https:// address.")
        hub = urllib.parse.urlsplit(endpoint())
        if parts.netloc == hub.netloc:  # a hub page or file link: use the API, so the sha256 is checked
            segs = [urllib.parse.unquote(s) for s in parts.path.strip("/").split("/")]
            if len(segs) >= 2 and segs[0] not in ("api", "datasets", "spaces"):
                repo = "/".join(segs[:2])
                if len(segs) >= 5 and segs[2] in ("resolve", "blob"):
                    return Source("hub", repo, file or "/".join(segs[4:]), segs[3])
                if len(segs) >= 4 and segs[2] == "tree":
                    return Source("hub", repo, file, segs[3])
                if len(segs) == 2:
                    return Source("hub", repo, file, revision)
        return Source("url", url=text)
    segs = text.split("/")
    if len(segs) > 2 and REPO_RE.fullmatch("/".join(segs[:2])) and not file:
        return Source("hub", "/".join(segs[:2]), "/".join(segs[2:]), revision)
    if REPO_RE.fullmatch(text):
        return Source("hub", text, file, revision)
    raise UserError(f"'{text}' is neither a Hugging Face repo id (org/repo) nor an https URL.",
                    "Give org/repo with --file NAME.safetensors, an https:// link, or one of: "
                    + ", ".join(b.key for b in known_bases.BASES) + ".")


# --- where models land ---

def checkpoint_dir() -> Path:
    """The host's checkpoint folder (the WebUI's models/Stable-diffusion), or <data dir>/models/Stable-diffusion."""
    from ..settings import data_dir

    where = host.current().checkpoint_dir
    return Path(where()) if where else data_dir() / "models" / "Stable-diffusion"


def part_dir(part: str) -> Path:
    """FLUX.1's parts beside the checkpoints, in the folders Forge reads them from (models/VAE, models/text_encoder),
    so they never show up as checkpoints in the WebUI's list."""
    return checkpoint_dir().parent / ("VAE" if part == "ae" else "text_encoder")


# --- HTTP ---

class _KeepAuthOnSameHost(urllib.request.HTTPRedirectHandler):
    """Follows redirects with Range kept; the token only to the same host (never to a CDN or another site)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        auth = req.unredirected_hdrs.get("Authorization")
        if new is not None and auth and urllib.parse.urlsplit(newurl).netloc == urllib.parse.urlsplit(
                req.full_url).netloc:
            new.add_unredirected_header("Authorization", auth)
        return new


_opener = urllib.request.build_opener(_KeepAuthOnSameHost())


def _request(url: str, token: str = "", headers: dict | None = None):
    req = urllib.request.Request(url, headers={"User-Agent": "cloudlora", **(headers or {})})
    if token:
        req.add_unredirected_header("Authorization", f"Bearer {token}")
    return _opener.open(req, timeout=TIMEOUT)


def _http_error(err: urllib.error.HTTPError, what: str, source: Source, had_token: bool) -> UserError:
    code = err.code
    try:
        body = err.read(2000).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - the body only adds detail
        body = ""
    detail = ""
    try:
        detail = str(json.loads(body).get("error", ""))[:300]
    except (ValueError, AttributeError):
        pass
    hub = source.kind == "hub" or urllib.parse.urlsplit(source.url).netloc == urllib.parse.urlsplit(endpoint()).netloc
    if code in (401, 403) and hub:
        page = f"{endpoint()}/{source.repo}" if source.repo else source.url
        if not had_token:
            return UserError(f"{what}: the hub answered {code}: this model is gated or private and needs a Hugging "
                             "Face token.",
                             f"Open {page}, log in and accept its licence; create a read token at "
                             f"{endpoint()}/settings/tokens, then give it (the panel's token field, or "
                             "`cloudlora model fetch ... --token-stdin`; it is kept in the OS keyring or the hub's "
                             "own token file, never in the settings).")
        return UserError(f"{what}: the hub refused your token ({code}{': ' + detail if detail else ''}).",
                         f"Open {page} logged in as the token's user and accept the model's licence (gated models "
                         "need that once per account); check that the token has read access "
                         f"({endpoint()}/settings/tokens).")
    if code in (401, 403):
        return UserError(f"{what}: the server answered {code} (it needs a login or an API key).",
                         "Civitai: create an API key in your account settings and add ?token=YOUR_KEY to the "
                         "download URL. Other sites: use a link that downloads without logging in.")
    if code == 404:
        if source.kind == "hub":
            return UserError(f"{what}: not found on the hub (404).",
                             f"Check the repo id '{source.repo}', the revision '{source.revision}' and the file "
                             f"name; the files are listed at {endpoint()}/{source.repo}/tree/{source.revision}. "
                             "A private repo also answers 404 without a token.")
        return UserError(f"{what}: not found (404).", "Check the URL: open it in a browser to see what it serves.")
    if code == 416:
        return UserError(f"{what}: the server refused to resume the download (416).",
                         "Run the fetch again: it starts over.")
    return UserError(f"{what}: the server answered {code} {err.reason}{': ' + detail if detail else ''}.",
                     "Try again later; if it persists, open the URL in a browser to see what it says.")


def _network_error(err: Exception, what: str) -> UserError:
    reason = getattr(err, "reason", err)
    return UserError(f"{what}: could not reach the server ({reason}).",
                     "Check the internet connection (and HTTPS_PROXY if you use a proxy); run the same fetch again "
                     "to resume.")


# --- the hub's file list ---

@dataclass
class RemoteFile:
    name: str
    size: int | None = None
    sha256: str = ""  # the LFS oid: the sha256 of the file's bytes


def repo_files(source: Source, token: str = "") -> list[RemoteFile]:
    """The repo's files with their sizes and LFS sha256 (the hub's model API with blobs)."""
    url = (f"{endpoint()}/api/models/{source.repo}/revision/{urllib.parse.quote(source.revision, safe='')}"
           "?blobs=true")
    what = f"Listing {source.repo}"
    try:
        with _request(url, token) as resp:
            info = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raise _http_error(err, what, source, bool(token)) from None
    except (urllib.error.URLError, OSError) as err:
        raise _network_error(err, what) from None
    except ValueError as err:
        raise UserError(f"{what}: the hub's answer is not JSON ({err}).", "Check HF_ENDPOINT.") from None
    out = []
    for s in info.get("siblings") or []:
        lfs = s.get("lfs") or {}
        out.append(RemoteFile(str(s.get("rfilename", "")), s.get("size") or lfs.get("size"),
                              str(lfs.get("sha256") or lfs.get("oid") or "")))
    return out


def pick_file(source: Source, files: list[RemoteFile]) -> RemoteFile:
    """The file to fetch: the one named, else the repo's only single-file checkpoint in its root."""
    names = {f.name: f for f in files}
    if source.file:
        if source.file in names:
            return names[source.file]
        choices = [f.name for f in files if f.name.lower().endswith(CHECKPOINT_EXTS)]
        raise UserError(f"{source.repo} has no file '{source.file}' (revision {source.revision}).",
                        ("Its checkpoint files: " + ", ".join(choices[:12]) + ".") if choices else
                        f"See the files at {endpoint()}/{source.repo}/tree/{source.revision}.")
    roots = [f for f in files if "/" not in f.name and f.name.lower().endswith(".safetensors")
             and not NOT_A_BASE.search(Path(f.name).stem)]
    known = known_bases.for_file(source.repo, "")
    if known is not None and known.file in names:
        return names[known.file]
    if len(roots) == 1:
        return roots[0]
    if len(roots) > 1:
        listing = ", ".join(f"{f.name} ({format_bytes(f.size or 0)})" for f in roots[:12])
        raise UserError(f"{source.repo} holds several checkpoints: {listing}.",
                        "Pick one with --file NAME (in the panel: the File field).")
    if "model_index.json" in names:
        raise UserError(f"{source.repo} is a diffusers folder without a single-file checkpoint; the store and the "
                        "WebUI take single-file checkpoints (.safetensors).",
                        "Fetch the same model's single-file release (most repos have one in their root, or a "
                        "'-single-file' sibling repo), or give --file NAME for a file in it.")
    raise UserError(f"{source.repo} has no .safetensors checkpoint in its root.",
                    f"Look at {endpoint()}/{source.repo}/tree/{source.revision} and give --file NAME.")


# --- the download ---

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


def _free_space(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _check_space(folder: Path, total: int | None, have: int, what: str) -> None:
    free = _free_space(folder)
    if total is not None and free is not None and free < total - have + DISK_MARGIN:
        raise UserError(f"{what}: not enough disk space in {folder}: it needs {format_bytes(total - have)}, "
                        f"{format_bytes(free)} is free.",
                        "Free some space (or point the checkpoint folder at a larger disk) and run the fetch again: "
                        "what was downloaded is kept.")


def download(url: str, dest_dir: Path, *, name: str = "", size: int | None = None, sha256: str = "",
             token: str = "", source: Source | None = None, progress: ProgressCallback | None = None,
             cancel: threading.Event | None = None) -> Downloaded:
    """Downloads `url` into dest_dir (as `name`, else the server's file name), resuming a partial download of the
    same URL; checks the size and, when given, the sha256. A finished file of that name and hash is not fetched.
    Two fetches of one URL on this machine (the tab and the CLI) never append to one partial file: the second waits,
    then finds the file there."""
    from .. import locks

    def on_wait() -> None:
        Meter(progress, "waiting for another download of this file", size or 0, item=name).emit()

    ident = hashlib.sha256(url.encode()).hexdigest()[:32]
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
    ident = hashlib.sha256(url.encode()).hexdigest()[:16]
    part = dest_dir / f".cloudlora-fetch-{ident}.part"
    meta_path = part.with_suffix(".json")
    meta = {}
    if part.exists():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        if meta.get("url") != url or (sha256 and meta.get("sha256") not in ("", sha256)) or \
                (size is not None and meta.get("size") not in (None, size)):
            part.unlink()  # a partial of other bytes: never stitched onto
            meta = {}
    have = part.stat().st_size if part.exists() else 0
    what = f"Downloading {name or source.describe()}"
    hasher = hashlib.sha256()
    if have:
        hasher = _hash_existing(part, Meter(progress, "checking the part already downloaded", have,
                                            item=name or part.name, min_interval=0.2), cancel)
    _check_space(dest_dir, size, have, what)  # the hub lists the size: before a byte is asked for
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        if meta.get("etag"):
            headers["If-Range"] = meta["etag"]
    try:
        resp = _request(url, token, headers)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing after what we have: the part may be the whole file
            _, total = _content_range(err.headers.get("Content-Range"))
            if total == have:
                return _finish(part, meta_path, dest_dir, meta.get("name") or name, have, hasher, sha256, have, 0,
                               progress)
        raise _http_error(err, what, source, bool(token)) from None
    except (urllib.error.URLError, OSError) as err:
        raise _network_error(err, what) from None
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
        _check_space(dest_dir, total, have, what)
        meta = {"url": url, "name": final_name, "size": total, "sha256": sha256,
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
            raise _network_error(err, what) from None
        except OSError as err:
            if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
                raise UserError(f"{what}: the disk is full ({dest_dir}) after {format_bytes(have + received)}.",
                                "Free some space and run the fetch again: it resumes from there.") from None
            if isinstance(err, (urllib.error.URLError, TimeoutError, ConnectionError)) or "timed out" in str(err):
                raise _network_error(err, what) from None
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


# --- the whole action: fetch, check, upload ---

def resolve_token(token: str | None) -> str:
    return (token or "").strip() or hub_token.find()


def _fetch_one(source: Source, dest_dir: Path, token: str, progress, cancel) -> Downloaded:
    if source.kind == "url":
        return download(source.url, dest_dir, source=source, progress=progress, cancel=cancel)
    remote = pick_file(source, repo_files(source, token))
    url = (f"{endpoint()}/{source.repo}/resolve/{urllib.parse.quote(source.revision, safe='')}/"
           f"{urllib.parse.quote(remote.name)}")
    return download(url, dest_dir, name=Path(remote.name).name, size=remote.size, sha256=remote.sha256,
                    token=token, source=Source("hub", source.repo, remote.name, source.revision),
                    progress=progress, cancel=cancel)


def fetch_model(store, source: str | Source, *, file: str | None = None, revision: str | None = None,
                name: str | None = None, family: str | None = None, token: str | None = None,
                dest_dir: Path | str | None = None, upload: bool = True,
                progress: ProgressCallback | None = None, cancel: threading.Event | None = None) -> dict:
    """Downloads the model (resumable, checked), checks its family, and uploads it with models.upload_model.

    Returns {"path", "downloaded_bytes", "resumed_from", "sha256_checked", "parts", ...the upload's result}."""
    from . import models

    src = source if isinstance(source, Source) else parse_source(source, file, revision)
    known = known_bases.by_key(source) if isinstance(source, str) else None
    known = known or (known_bases.for_file(src.repo, src.file) if src.kind == "hub" else None)
    tok = resolve_token(token)
    dest = Path(dest_dir).expanduser() if dest_dir else checkpoint_dir()
    got = _fetch_one(src, dest, tok, progress, cancel)
    try:
        fam = models.family_of(got.path, family or (known.family if known and got.path.name == known.file else None))
    except UserError as err:
        raise UserError(f"Downloaded {got.path}, but it is not a base model this extension trains on: {err.message}",
                        (err.fix or "") + f" Delete {got.path} if you do not need it.") from None
    parts: dict[str, Path] = {}
    if known is not None and known.parts and fam == "flux" and got.path.name == known.file:
        for part, where in known.parts.items():
            r = _fetch_one(Source("hub", where.repo, where.file), part_dir(part), tok, progress, cancel)
            parts[part] = r.path
    result = {"path": str(got.path), "downloaded_bytes": got.bytes_received, "resumed_from": got.resumed_from,
              "sha256_checked": got.checked, "already_downloaded": got.already_there, "family": fam,
              "parts": {p: str(v) for p, v in parts.items()}}
    if not upload:
        return result
    store_name = name or (known.key if known and got.path.name == known.file else None)
    up = models.upload_model(store, got.path, name=store_name, family=fam, progress=progress, cancel=cancel,
                             parts=parts or None)
    return {**up, **result}
