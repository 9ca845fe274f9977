"""Settings resolution: command-line flag > environment > WebUI options > settings file > default.

Secrets never live here: credentials come only from AWS's own chain (profiles, SSO, env, roles).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Mapping

import platformdirs

from . import atomic, private_files

APP = "cloudlora"


@dataclass(frozen=True)
class Settings:
    backend: str = ""  # "local" | "sagemaker"; "" means: sagemaker when bucket+role are set, else local
    aws_profile: str = ""
    region: str = ""
    bucket: str = ""
    role_arn: str = ""
    image_uri: str = ""
    instance_type: str = "ml.g5.2xlarge"
    store_dir: str = ""  # the local store folder
    s3_endpoint_url: str = ""  # for S3-compatible stores (SeaweedFS, MinIO, R2)
    lora_dir: str = ""  # where pulled LoRAs go outside the WebUI
    trainer_python: str = ""  # interpreter for the local backend; "" = the managed venv
    # Host names the REST routes answer to besides this machine's addresses (comma-separated; api/guard.py). Not a
    # WebUI option on purpose: a setting that widens who may call the API must not be changeable through that API.
    allowed_hosts: str = ""
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def effective_backend(self) -> str:
        if self.backend in ("local", "sagemaker"):
            return self.backend
        return "sagemaker" if (self.bucket and self.role_arn) else "local"

    @property
    def effective_store_dir(self) -> Path:
        return Path(self.store_dir).expanduser() if self.store_dir else data_dir() / "store"

    @property
    def effective_lora_dir(self) -> Path:
        return Path(self.lora_dir).expanduser() if self.lora_dir else data_dir() / "Lora"

    def public(self) -> dict:
        d = asdict(self)
        d.pop("sources", None)
        return d


# Environment variables per setting (first match wins).
ENV = {
    "backend": ["CLOUDLORA_BACKEND"],
    "aws_profile": ["AWS_PROFILE"],
    "region": ["CLOUDLORA_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"],
    "bucket": ["CLOUDLORA_BUCKET"],
    "role_arn": ["CLOUDLORA_ROLE_ARN"],
    "image_uri": ["CLOUDLORA_IMAGE_URI"],
    "instance_type": ["CLOUDLORA_INSTANCE_TYPE"],
    "store_dir": ["CLOUDLORA_STORE"],
    "s3_endpoint_url": ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"],
    "lora_dir": ["CLOUDLORA_LORA_DIR"],
    "trainer_python": ["CLOUDLORA_TRAINER_PYTHON"],
    "allowed_hosts": ["CLOUDLORA_ALLOWED_HOSTS"],
}

# Set by the WebUI glue: returns the extension's options (key -> value) from shared.opts.
_webui_options: Callable[[], Mapping[str, str]] | None = None


def set_webui_options_provider(fn: Callable[[], Mapping[str, str]] | None) -> None:
    global _webui_options
    _webui_options = fn


def config_dir() -> Path:
    return Path(os.environ.get("CLOUDLORA_CONFIG_DIR") or platformdirs.user_config_dir(APP))


def data_dir() -> Path:
    """The user's data folder (store, uploads, imports, hash cache, locks, ...), created private (0700)."""
    return private_files.ensure_dir(Path(os.environ.get("CLOUDLORA_DATA_DIR") or platformdirs.user_data_dir(APP)))


def settings_file() -> Path:
    return config_dir() / "settings.json"


def read_file() -> dict:
    path = settings_file()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        from .errors import UserError

        raise UserError(f"The settings file {path} is not valid JSON ({err}).", f"Fix or delete {path}.") from err
    return {k: str(v) for k, v in data.items() if k in _NAMES}


def save(updates: Mapping[str, str]) -> Path:
    """Writes settings (never secrets) into the user's settings file; returns its path."""
    unknown = set(updates) - _NAMES
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}")
    data = read_file()
    data.update({k: str(v) for k, v in updates.items()})
    path = settings_file()
    private_files.ensure_dir(path.parent)
    tmp = path.with_suffix(".tmp")
    private_files.write_text(tmp, json.dumps(data, indent=2, sort_keys=True))
    atomic.replace(tmp, path)
    return path


_NAMES = {f.name for f in fields(Settings)} - {"sources"}


def resolve(flags: Mapping[str, object] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    layers: list[tuple[str, Mapping]] = [("flag", {k: v for k, v in (flags or {}).items() if v not in (None, "")})]
    layers.append(("env", {n: next((environ[e] for e in envs if environ.get(e)), None) for n, envs in ENV.items()}))
    if _webui_options is not None:
        layers.append(("webui", dict(_webui_options())))
    layers.append(("file", read_file()))
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name in _NAMES:
        for source, layer in layers:
            v = layer.get(name)
            if v not in (None, ""):
                values[name] = str(v)
                sources[name] = source
                break
        else:
            sources[name] = "default"
    return Settings(**values, sources=sources)
