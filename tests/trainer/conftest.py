"""Shared fixtures for the trainer tests (CPU, offline): tiny random-weight checkpoints, built once per checkout."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing in the trainer may reach the hub: any attempt fails the test instead of downloading.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parents[2]
TINY_CACHE = ROOT / ".cache" / "tiny"


def _tiny(arch: str) -> Path:
    from cloudlora_backend.trainer.tiny import is_current, make_tiny_checkpoint

    path = TINY_CACHE / f"tiny-{arch}.safetensors"  # the same file tests/webui/conftest.py builds
    if not is_current(path, arch):
        make_tiny_checkpoint(arch, path)
    return path


@pytest.fixture(scope="session")
def tiny_sd15_path() -> Path:
    return _tiny("sd15")


@pytest.fixture(scope="session")
def tiny_sdxl_path() -> Path:
    return _tiny("sdxl")
