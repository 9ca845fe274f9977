"""The Hugging Face token for gated models: read from HF_TOKEN, the OS keyring or the hub's own token file; saved to
the keyring when one works, else to the hub's token file (where `huggingface-cli login` puts it).

Never in the extension's settings or the WebUI's options: those are served by GET /sdapi/v1/options and copied around
in config files, a token is a password.
"""
from __future__ import annotations

import os
from pathlib import Path

from .. import atomic, private_files

KEYRING_SERVICE = "cloudlora"
KEYRING_USER = "huggingface"


def hub_token_file() -> Path:
    """huggingface_hub's token path: HF_TOKEN_PATH, else $HF_HOME/token (HF_HOME: ~/.cache/huggingface)."""
    if os.environ.get("HF_TOKEN_PATH"):
        return Path(os.environ["HF_TOKEN_PATH"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return Path(home).expanduser() / "token"


def _keyring():
    """The keyring module when it has a real backend (not the 'fail' one a headless Linux gets), else None."""
    if os.environ.get("CLOUDLORA_NO_KEYRING"):
        return None
    try:
        import keyring
        from keyring.backends import fail
    except Exception:  # noqa: BLE001 - not installed, or a broken backend: the token file is used
        return None
    try:
        return None if isinstance(keyring.get_keyring(), fail.Keyring) else keyring
    except Exception:  # noqa: BLE001
        return None


def find() -> str:
    """The token to send, or "": HF_TOKEN (or the older HUGGING_FACE_HUB_TOKEN), the keyring, the hub's file."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(var, "").strip():
            return os.environ[var].strip()
    kr = _keyring()
    if kr is not None:
        try:
            value = kr.get_password(KEYRING_SERVICE, KEYRING_USER)
            if value:
                return value.strip()
        except Exception:  # noqa: BLE001 - a locked or broken keyring: try the file
            pass
    try:
        return hub_token_file().read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def save(token: str) -> str:
    """Keeps the token for later fetches; returns where it went, in words."""
    token = (token or "").strip()
    if not token:
        return ""
    kr = _keyring()
    if kr is not None:
        try:
            kr.set_password(KEYRING_SERVICE, KEYRING_USER, token)
            return "the OS keyring"
        except Exception:  # noqa: BLE001 - fall back to the hub's own file
            pass
    path = hub_token_file()
    private_files.ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    private_files.write_text(tmp, token)  # 0600, as huggingface-cli leaves it
    atomic.replace(tmp, path)
    return f"the Hugging Face token file {path}"
