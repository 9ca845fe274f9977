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


def _tiny_flux(layout: str, folder: str, name: str, fp8: bool = False) -> dict:
    from cloudlora_backend.trainer.model import flux_keys as K
    from cloudlora_backend.trainer.flux.tiny import is_current, write_tiny

    path = TINY_CACHE / folder / name
    if not is_current(path, layout, fp8=fp8) or (layout == "parts" and not all(
            (path.parent / K.PART_FILES[p]).is_file() for p in K.PARTS[1:])):
        return write_tiny(path, layout=layout, fp8=fp8)
    if layout == "parts":
        return {"transformer": path, **{p: path.parent / K.PART_FILES[p] for p in K.PARTS[1:]}}
    return {p: path for p in K.PARTS}


@pytest.fixture(scope="session")
def tiny_flux_path() -> Path:
    """A tiny FLUX.1 all-in-one file (Forge / ComfyUI layout: transformer, CLIP-L, T5-XXL and AE in one)."""
    return _tiny_flux("all-in-one", "flux", "tiny-flux.safetensors")["transformer"]


@pytest.fixture(scope="session")
def tiny_flux_fp8_path() -> Path:
    """The same, with the transformer's weights in float8_e4m3fn (like Forge's flux1-dev-fp8.safetensors)."""
    return _tiny_flux("all-in-one", "flux-fp8", "tiny-flux-fp8.safetensors", fp8=True)["transformer"]


@pytest.fixture(scope="session")
def tiny_flux_parts() -> dict:
    """{transformer: BFL transformer-only file (like flux1-dev.safetensors), clip_l, t5xxl, ae: files beside it}."""
    return _tiny_flux("parts", "flux-parts", "flux1-tiny.safetensors")


@pytest.fixture(scope="session")
def tiny_flux_diffusers(tmp_path_factory) -> Path:
    """The tiny FLUX.1 model as a diffusers FluxPipeline folder (same weights as the files above, in fp32)."""
    from cloudlora_backend.trainer.flux.tiny import write_diffusers_folder

    return write_diffusers_folder(tmp_path_factory.mktemp("flux-diffusers"))
