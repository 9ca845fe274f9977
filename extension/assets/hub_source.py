"""Where a model comes from: a Hugging Face repo (and file) or a plain https URL, parsed from what the user typed;
the hub's file list (sizes and LFS sha256); the single-file checkpoint to pick; and the HTTP layer the download uses
(the token never follows a redirect to another host) with its errors in words.

Plain urllib against the hub's HTTP API (`/api/models/<repo>/revision/<rev>?blobs=true` for the file list, sizes and
LFS sha256; `/<repo>/resolve/<rev>/<file>` for the bytes), because the WebUI venvs carry huggingface_hub from 0.19 to
1.x and this needs none of it. HF_ENDPOINT is honoured as huggingface_hub does, which is also how tests point it at a
local server.
"""
from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from . import known_bases
from .progress import format_bytes

TIMEOUT = 60
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
            return redact_url(self.url)
        return f"{self.repo}" + (f" / {self.file}" if self.file else "") + \
            (f" @ {self.revision}" if self.revision != "main" else "")


# Query parameters that carry a secret (Civitai's ?token=, api keys, signed-URL signatures): never written to a file,
# a task name, a log or an error; the URL with them stays in memory for the request only.
SECRET_PARAM = re.compile(r"token|key|secret|sig|signature|auth|password|passwd|credential|session", re.IGNORECASE)


def redact_url(url: str) -> str:
    """The URL as it may be shown or stored: secret query values (?token=...) and a user:password@ become '***'."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<the URL>"
    netloc = parts.netloc.rsplit("@", 1)[-1] if "@" in parts.netloc else parts.netloc
    if "@" in parts.netloc:
        netloc = "***@" + netloc
    pairs = (q.partition("=") for q in parts.query.split("&") if q)
    query = "&".join(f"{k}=***" if v and SECRET_PARAM.search(urllib.parse.unquote_plus(k)) else k + sep + v
                     for k, sep, v in pairs)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def loopback(host_name: str) -> bool:
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
        if parts.scheme == "http" and not loopback(parts.hostname):
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


# --- HTTP ---

class KeepAuthOnSameHost(urllib.request.HTTPRedirectHandler):
    """Follows redirects with Range kept; the token only to the same host (never to a CDN or another site)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        auth = req.unredirected_hdrs.get("Authorization")
        if new is not None and auth and urllib.parse.urlsplit(newurl).netloc == urllib.parse.urlsplit(
                req.full_url).netloc:
            new.add_unredirected_header("Authorization", auth)
        return new


opener = urllib.request.build_opener(KeepAuthOnSameHost())


def request(url: str, token: str = "", headers: dict | None = None):
    req = urllib.request.Request(url, headers={"User-Agent": "cloudlora", **(headers or {})})
    if token:
        req.add_unredirected_header("Authorization", f"Bearer {token}")
    return opener.open(req, timeout=TIMEOUT)


def http_error(err: urllib.error.HTTPError, what: str, source: Source, had_token: bool) -> UserError:
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
        page = f"{endpoint()}/{source.repo}" if source.repo else source.describe()
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


def network_error(err: Exception, what: str) -> UserError:
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
        with request(url, token) as resp:
            info = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raise http_error(err, what, source, bool(token)) from None
    except (urllib.error.URLError, OSError) as err:
        raise network_error(err, what) from None
    except ValueError as err:
        raise UserError(f"{what}: the hub's answer is not JSON ({err}).", "Check HF_ENDPOINT.") from None
    out = []
    for s in info.get("siblings") or []:
        lfs = s.get("lfs") or {}
        out.append(RemoteFile(str(s.get("rfilename", "")), s.get("size") or lfs.get("size"),
                              str(lfs.get("sha256") or lfs.get("oid") or "")))
    return out


def root_checkpoints(files: list[RemoteFile]) -> list[RemoteFile]:
    """The .safetensors files in the repo's root that may be a base model (not a VAE, LoRA, text encoder...)."""
    return [f for f in files if "/" not in f.name and f.name.lower().endswith(".safetensors")
            and not NOT_A_BASE.search(Path(f.name).stem)]


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
    roots = root_checkpoints(files)
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
        raise UserError(f"{source.repo} is a diffusers folder without a single-file checkpoint in its root.",
                        f"Fetch it as a folder: `cloudlora model fetch {source.repo}` without --file (the panel: leave "
                        "the File field empty), or give --file NAME for a single-file checkpoint in it.")
    raise UserError(f"{source.repo} has no .safetensors checkpoint in its root.",
                    f"Look at {endpoint()}/{source.repo}/tree/{source.revision} and give --file NAME.")


def resolve_url(source: Source, name: str) -> str:
    """The URL of one file of a hub repo at the source's revision."""
    return (f"{endpoint()}/{source.repo}/resolve/{urllib.parse.quote(source.revision, safe='')}/"
            f"{urllib.parse.quote(name)}")
