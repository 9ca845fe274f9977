"""Helpers for the auto-captioning tests: a tiny WD14 tagger built once per session, and small coloured datasets."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
RED, BLUE, GREY = (220, 20, 20), (20, 20, 220), (40, 40, 40)  # grey: no colour tag


def image(path: Path, colour=GREY, size=(64, 64)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def caption_of(image_path: Path, ext: str = ".txt") -> str:
    return image_path.with_suffix(ext).read_text(encoding="utf-8").strip()


def run_cli(*args: str, timeout: int = 120) -> tuple[int, list[dict], str]:
    """`python -m cloudlora_backend.trainer.captions ARGS` as the extension runs it: exit code, JSON lines, stderr."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "cloudlora_backend.trainer.captions", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, events, proc.stderr


@pytest.fixture(scope="session")
def tiny_wd14(tmp_path_factory) -> Path:
    """The tiny tagger (cloudlora_backend.trainer.captions.tiny): each tag's probability is fixed, or follows the
    image's colour (red theme, blue theme)."""
    from cloudlora_backend.trainer.captions.tiny import make_tiny_wd14

    return make_tiny_wd14(tmp_path_factory.mktemp("wd14"))
