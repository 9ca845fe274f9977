""""Add access key": writes a named profile into the standard AWS credentials file (mode 0600).

The secret goes only there (AWS's own chain reads it, like `aws configure` would write it); it is never logged,
returned, or kept in settings or UI state. The rest of the file is left byte for byte as it was: only the profile's
own section is replaced (or appended).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .. import atomic
from ..errors import UserError

PROFILE_RE = re.compile(r"^[A-Za-z0-9_.+@-]{1,64}$")
KEY_ID_RE = re.compile(r"^[A-Z0-9]{16,128}$")


def credentials_file() -> Path:
    return Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials").expanduser()


def config_file() -> Path:
    return Path(os.environ.get("AWS_CONFIG_FILE") or Path.home() / ".aws" / "config").expanduser()


def _replace_section(text: str, header: str, body: dict[str, str]) -> str:
    """`text` with section [header] replaced by `body` (appended when absent); other lines untouched."""
    lines = text.splitlines()
    new_section = [f"[{header}]"] + [f"{k} = {v}" for k, v in body.items()]
    start = next((i for i, line in enumerate(lines) if line.strip() == f"[{header}]"), None)
    if start is None:
        if lines and lines[-1].strip():
            lines.append("")
        return "\n".join(lines + new_section) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    # keep the keys we do not manage (e.g. a region someone put there), in their order
    kept = [line for line in lines[start + 1:end]
            if line.strip() and "=" in line and line.split("=", 1)[0].strip() not in body]
    tail = [""] if end < len(lines) else []
    return "\n".join(lines[:start] + new_section + kept + tail + lines[end:]) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Atomically writes `text` with mode 0600 (the file never exists with wider permissions).

    Bytes, LF line ends: a text-mode file on Windows would write each line break as \r\r\n, which
    `_replace_section` then reads as two, doubling the blank lines of the user's other profiles on every write."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)  # like `aws configure`: ~/.aws readable by the user only
    atomic.write_bytes(path, text.encode("utf-8"), mode=0o600)


def validate(profile: str, access_key_id: str, secret_access_key: str) -> tuple[str, str, str]:
    profile, access_key_id, secret = (profile or "").strip(), (access_key_id or "").strip(), \
        (secret_access_key or "").strip()
    if not PROFILE_RE.match(profile):
        raise UserError(f"The profile name '{profile}' is not usable (letters, digits, . _ - + @; up to 64).",
                        "Type a simple name such as 'cloudlora'.")
    if not KEY_ID_RE.match(access_key_id):
        raise UserError("The access key ID does not look like one (upper-case letters and digits, e.g. AKIA...).",
                        "Copy the 'Access key ID' column of the key from the IAM console.")
    if len(secret) < 16 or any(c.isspace() for c in secret):
        raise UserError("The secret access key does not look like one (about 40 characters, no spaces).",
                        "Copy the secret shown once when the key was created; if it is lost, create a new key.")
    return profile, access_key_id, secret


def verify_key(access_key_id: str, secret: str, region: str = "") -> str:
    """The ARN the key belongs to (sts:GetCallerIdentity, needs no permission); UserError when AWS rejects it."""
    import boto3

    from .session import aws_errors, client_config

    session = boto3.Session(aws_access_key_id=access_key_id, aws_secret_access_key=secret,
                            region_name=region or "us-east-1")
    with aws_errors(what="checking the new access key"):
        return session.client("sts", config=client_config(fast=True)).get_caller_identity()["Arn"]


def add_access_key(profile: str, access_key_id: str, secret_access_key: str, region: str = "", *,
                   verify: bool = True) -> dict:
    """Checks the key with AWS (unless verify=False), then writes it as [profile] in the credentials file, and the
    region into the config file. Returns {profile, credentials_file, arn}; never the secret."""
    profile, key_id, secret = validate(profile, access_key_id, secret_access_key)
    region = (region or "").strip()
    arn = verify_key(key_id, secret, region) if verify else ""
    path = credentials_file()
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    _write_private(path, _replace_section(old, profile, {"aws_access_key_id": key_id,
                                                         "aws_secret_access_key": secret}))
    if region:
        cfg = config_file()
        header = "default" if profile == "default" else f"profile {profile}"
        old_cfg = cfg.read_text(encoding="utf-8") if cfg.exists() else ""
        existing = _section_values(old_cfg, header)
        existing["region"] = region
        _write_private(cfg, _replace_section(old_cfg, header, existing))
    return {"profile": profile, "credentials_file": str(path), "arn": arn}


def _section_values(text: str, header: str) -> dict[str, str]:
    values, inside = {}, False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("["):
            inside = s == f"[{header}]"
        elif inside and "=" in s and not s.startswith(("#", ";")):
            k, v = s.split("=", 1)
            values[k.strip()] = v.strip()
    return values


def list_profiles() -> list[str]:
    """Profile names from the credentials and config files (for the profile dropdown)."""
    names: list[str] = []
    for path, is_config in ((credentials_file(), False), (config_file(), True)):
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            m = re.match(r"^\s*\[(.+)\]\s*$", line)
            if not m:
                continue
            name = m.group(1).strip()
            if is_config:
                if name.startswith("profile "):
                    name = name[len("profile "):].strip()
                elif name != "default":
                    continue  # [sso-session x], [services x]
            if name not in names:
                names.append(name)
    return names
