"""LyCORIS from PyPI loads this trainer's LoRA, LoCon, DoRA and FLUX.1 files to exactly their weights.

LyCORIS is not a trainer dependency (users don't need it), so the fixture installs each version once per machine
into .cache/lycoris-<version> (`pip install --no-deps --target`, with the two imports lycoris needs beyond the
trainer venv: einops and toml) and runs it in a subprocess of the trainer venv's python (tests/trainer/
lycoris_probe.py). What each version does with files it cannot rebuild exactly is asserted, not skipped: a changed
LyCORIS fails here and says what changed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cloudlora_backend.trainer.network import lora
from cloudlora_backend.trainer.config.network_spec import parse
from tests.trainer.conftest import ROOT
from tests.trainer.test_model_lora import _randomise_adapters

VERSIONS = ("3.2.0.post2", "4.1.3")
EXTRA = ("einops==0.8.2", "toml==0.10.2")  # lycoris_lora's other requirements are in the trainer venv
# Modules LyCORIS' own presets add on a diffusers SD 1.5 UNet beyond sd-scripts' set, which this trainer trains:
# preset "full" (its default, needed for LoCon: its only preset with 3x3 convolutions) adds conv_in, conv_out and
# the time embedding; 4.x also counts diffusers' TimestepEmbedding class among its attn-mlp targets.
FULL_EXTRA = {"lora_unet_conv_in", "lora_unet_conv_out", "lora_unet_time_embedding_linear_1",
              "lora_unet_time_embedding_linear_2"}
TIME_EMBEDDING = {"lora_unet_time_embedding_linear_1", "lora_unet_time_embedding_linear_2"}


def lycoris_dir(version: str) -> Path:
    """lycoris_lora==version (+ einops, toml) under .cache, installed once per machine from PyPI."""
    target = ROOT / ".cache" / f"lycoris-{version}"
    if (target / "lycoris" / "__init__.py").is_file():
        return target
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--target", str(partial), f"lycoris_lora=={version}", *EXTRA], check=True)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def _sd15_file(path: Path, model: Path, toml_args: list[str], module: str, train_te: bool) -> Path:
    from cloudlora_backend.trainer.model.load import load_components

    spec = parse(module, toml_args)
    c = load_components(model)
    lora.add_lora(c, rank=4, alpha=3, train_text_encoder=train_te, conv_dim=spec.conv_dim,
                  conv_alpha=spec.conv_alpha, use_dora=spec.dora)
    _randomise_adapters(c, seed=3)
    facts = {"network_module": spec.module, "network_args": spec.ss_network_args()}
    return lora.save_kohya(path, c, 4, 3, facts, torch.float32)


def _flux_file(path: Path, model: Path) -> Path:
    from cloudlora_backend.trainer.flux.load import load_flux
    from cloudlora_backend.trainer.flux.lora import add_lora, save_flux_lora

    c = load_flux(model)
    add_lora(c.unet, 4, 2)
    _randomise_adapters(c, seed=5)
    return save_flux_lora(path, c, 4, 2, {"network_module": "networks.lora_flux"}, torch.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_sd15_path, tiny_flux_path):
    d = tmp_path_factory.mktemp("lycoris")
    return {
        "lora": (_sd15_file(d / "lora.safetensors", tiny_sd15_path, [], "networks.lora", True), tiny_sd15_path),
        "locon": (_sd15_file(d / "locon.safetensors", tiny_sd15_path, ["conv_dim=2", "conv_alpha=1.5"],
                             "networks.lora", False), tiny_sd15_path),
        "dora": (_sd15_file(d / "dora.safetensors", tiny_sd15_path, ["dora_wd=True"], "lycoris.kohya", True),
                 tiny_sd15_path),
        "dora_locon": (_sd15_file(d / "dora_locon.safetensors", tiny_sd15_path, ["conv_dim=2", "dora_wd=True"],
                                  "lycoris.kohya", False), tiny_sd15_path),
        "lycoris_locon": (_sd15_file(d / "lycoris_locon.safetensors", tiny_sd15_path, ["conv_dim=2", "conv_alpha=1"],
                                     "lycoris.kohya", False), tiny_sd15_path),
        "flux": (_flux_file(d / "flux.safetensors", tiny_flux_path), tiny_flux_path),
    }


def _probe(version: str, files: dict, tmp_path: Path) -> dict:
    job = tmp_path / f"job-{version}.json"
    job.write_text(json.dumps([{"file": str(f), "model": str(m), "family": "flux" if k == "flux" else "sd15"}
                               for k, (f, m) in files.items()]), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, "-m", "tests.trainer.lycoris_probe", str(lycoris_dir(version)), str(job)],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    by_file = {json.loads(line)["file"]: json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")}
    return {k: by_file[str(f)] for k, (f, _) in files.items()}


def _modules(keys) -> set[str]:
    return {k.split(".")[0] for k in keys}


def _exact(result: dict) -> None:
    assert "error" not in result, result
    assert result["missing"] == [] and result["unexpected"] == [] and result["differ"] == [], result


def test_lycoris_3_2_loads_every_network_type_to_exactly_the_files_weights(files, tmp_path):
    got = _probe("3.2.0.post2", files, tmp_path)
    for kind in ("lora", "locon", "flux"):  # dim_from_weights: the file decides the modules
        _exact(got[kind]["from_weights"])
    # network_weights: ss_network_args rebuild the DoRA exactly, dora_scale axis included (wd_on_output=False)
    _exact(got["dora"]["create_network"])
    # LyCORIS' make_module_from_state_dict always builds output-axis DoRA (wd_on_out=True), so no input-axis
    # dora_scale (the one A1111 1.10 applies) can go through create_network_from_weights
    assert "RuntimeError" in got["dora"]["from_weights"]["error"]
    # LoCon under lycoris.kohya: conv_dim/conv_alpha reproduced; "full" adds its own four modules, which start fresh
    for kind in ("dora_locon", "lycoris_locon"):
        r = got[kind]["create_network"]
        assert r["unexpected"] == [] and r["differ"] == [] and _modules(r["missing"]) == FULL_EXTRA, r


def test_lycoris_4_loads_what_its_presets_let_it_build(files, tmp_path):
    got = _probe(VERSIONS[-1], files, tmp_path)
    _exact(got["flux"]["from_weights"])
    # On any diffusers UNet its "full" preset targets the TimestepEmbedding class *and* the names
    # time_embedding.linear_1/2, so building the network fails before a file is read (see BENCHMARKS).
    for kind in ("lora", "locon", "lycoris_locon"):
        assert "duplicated lora name: lora_unet_time_embedding_linear_1" in got[kind]["from_weights"]["error"]
    for kind in ("dora_locon", "lycoris_locon"):
        assert "duplicated lora name" in got[kind]["create_network"]["error"]
    r = got["dora"]["create_network"]  # attn-mlp: sd-scripts' set plus the time embedding
    assert r["unexpected"] == [] and r["differ"] == [] and _modules(r["missing"]) == TIME_EMBEDDING, r
