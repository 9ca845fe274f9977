#!/usr/bin/env bash
# Wheels the GPU machine lacks for bench/train/gpu_bench.py, at the trainer lock's versions (its image has torch,
# accelerate, safetensors, huggingface_hub, tokenizers, regex, pillow, numpy, but no diffusers or tomlkit, and another
# transformers and peft: KINDS.md's package list, 2026-11). Downloads them into .whl/ (ignored by git); the device call carries .whl and installs them with
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
set -euo pipefail
cd "$(dirname "$0")/../.."
exclude="$(git rev-parse --git-common-dir)/info/exclude"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo /.whl/ >> "$exclude"
lock=cloud_backend/requirements-lock.txt
pins=()
for name in diffusers peft transformers tomlkit; do
  pins+=("$(grep -i "^${name}==" "$lock")")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d .whl "${pins[@]}"
ls -la .whl
