"""Shared fixtures for the WebUI-side tests (run under A1111's pins).

Area fixtures live in tests/webui/fixtures/*.py and are all loaded here (S3 server, moto, browser, ...).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY_CACHE = ROOT / ".cache" / "tiny"


def _load_area_fixtures() -> None:
    """Imports every tests/webui/fixtures/*.py and exposes its fixtures here (pytest_plugins is root-only)."""
    import importlib

    for path in sorted((Path(__file__).parent / "fixtures").glob("*.py")):
        if path.stem.startswith("_"):
            continue
        module = importlib.import_module(f"tests.webui.fixtures.{path.stem}")
        globals().update({k: v for k, v in vars(module).items() if not k.startswith("_")})


_load_area_fixtures()


TORCH_INDEX = ROOT / ".cache" / "torch-index" / "cp310"


@pytest.fixture(scope="session", autouse=True)
def torch_index_is_set_up():
    """Without the folder, pip would find only PyPI's CUDA torch and the doctor's answers would change: say so."""
    assert (TORCH_INDEX / ".stamp").exists(), (
        f"{TORCH_INDEX} is missing: `bash tools/test.sh` sets it up (or `source tools/env.sh && env_torch_index`)")


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory, monkeypatch):
    """No test reads or writes the real user's settings, store or AWS config."""
    for var in ["CLOUDLORA_BACKEND", "CLOUDLORA_BUCKET", "CLOUDLORA_ROLE_ARN", "CLOUDLORA_IMAGE_URI",
                "CLOUDLORA_STORE", "CLOUDLORA_LORA_DIR", "CLOUDLORA_REGION", "AWS_PROFILE", "AWS_REGION",
                "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "CLOUDLORA_TRAINER_PYTHON"]:
        monkeypatch.delenv(var, raising=False)
    home = tmp_path_factory.mktemp("home")  # not inside tmp_path: tests own that folder
    monkeypatch.setenv("CLOUDLORA_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("CLOUDLORA_DATA_DIR", str(home / "data"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never probe 169.254.169.254
    # The PyTorch index is this machine's folder of wheels (tools/env.sh env_torch_index): never download.pytorch.org.
    monkeypatch.setenv("CLOUDLORA_TORCH_INDEX", str(TORCH_INDEX))
    yield home


@pytest.fixture(scope="session")
def trainer_python() -> str:
    """The trainer environment's interpreter. tools/test.sh sets it; without it the test fails (never skips)."""
    py = os.environ.get("CLOUDLORA_TEST_TRAINER_PYTHON")
    assert py and Path(py).exists(), "set CLOUDLORA_TEST_TRAINER_PYTHON (tools/test.sh does) to .venv/trainer/bin/python"
    return py


def build_tiny_model(trainer_python: str, arch: str) -> Path:
    """A random-weight A1111-layout checkpoint, built once per checkout by the trainer environment."""
    out = TINY_CACHE / f"tiny-{arch}.safetensors"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([trainer_python, "-m", "cloudlora", "make-tiny-model", "--arch", arch, str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def tiny_sd15(trainer_python) -> Path:
    return build_tiny_model(trainer_python, "sd15")


@pytest.fixture(scope="session")
def tiny_sdxl(trainer_python) -> Path:
    return build_tiny_model(trainer_python, "sdxl")


@pytest.fixture(scope="session")
def tiny_flux_parts(trainer_python) -> dict:
    """A tiny FLUX.1 transformer-only file (BFL layout) with clip_l / t5xxl_fp16 / ae .safetensors beside it."""
    out = TINY_CACHE / "flux-parts-cli" / "flux1-tiny.safetensors"
    names = {"clip_l": "clip_l.safetensors", "t5xxl": "t5xxl_fp16.safetensors", "ae": "ae.safetensors"}
    if not (out.exists() and all((out.parent / n).exists() for n in names.values())):
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([trainer_python, "-m", "cloudlora", "make-tiny-model", "--arch", "flux", "--layout", "parts",
                        str(out)], check=True)
    return {"transformer": out, **{part: out.parent / n for part, n in names.items()}}


@pytest.fixture
def sample_dataset() -> Path:
    """The sample dataset the repo ships (generated images, see samples/README.md)."""
    return ROOT / "samples" / "dataset"
