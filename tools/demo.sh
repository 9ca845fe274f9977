#!/usr/bin/env bash
# The README's main job on the embedded default: the local backend, no AWS.
# Sets up the trainer environment (.venv/trainer, idempotent), keeps every bit of state under ./out/, builds a tiny
# random-weight SD 1.5 checkpoint, trains a LoRA on the sample dataset with the local backend (the same trainer
# entrypoint and SageMaker container contract as in the cloud), and prints where the LoRA landed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source tools/env.sh
env_trainer

OUT="${CLOUDLORA_DEMO_OUT:-$ROOT/out}"  # where all state goes (default ./out)
mkdir -p "$OUT"
# Everything the demo writes stays in ./out (settings, store, jobs, the LoRA folder); nothing talks to AWS.
export CLOUDLORA_CONFIG_DIR="$OUT/config"
export CLOUDLORA_DATA_DIR="$OUT/data"
export CLOUDLORA_STORE="$OUT/store"
export CLOUDLORA_LORA_DIR="$OUT/Lora"
export CLOUDLORA_TRAINER_PYTHON="$ROOT/.venv/trainer/bin/python"
export CLOUDLORA_BACKEND=local
export AWS_EC2_METADATA_DISABLED=true
unset CLOUDLORA_BUCKET CLOUDLORA_ROLE_ARN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 2>/dev/null || true

# The trainer environment also has the `cloudlora` command (the WebUI side's code, plus torch for make-tiny-model).
cloudlora() { "$ROOT/.venv/trainer/bin/python" -m cloudlora "$@"; }

echo "== $(cloudlora --version): local backend, state in $OUT"
MODEL="$OUT/tiny-sd15.safetensors"
if [ ! -f "$MODEL" ]; then
  echo "== building a tiny random-weight SD 1.5 checkpoint (A1111 single-file layout): $MODEL"
  cloudlora make-tiny-model --arch sd15 "$MODEL"
fi

# The tiny random model learns nothing useful, so a short run at 128 px shows the whole path (upload, job, steps,
# Kohya file, sidecar, preview, pull into the LoRA folder): about 15 s of training on a 2-core CPU, under a minute
# in all. Drop the --set lines for a real model. Pulling never overwrites: a second run lands as demo-1, demo-2, ...
echo "== training the LoRA 'demo' on samples/dataset (local backend)"
RESULT="$OUT/last-train.json"
cloudlora train --backend local --model "$MODEL" --dataset samples/dataset --name demo --wait --json \
  --set max_train_steps="${DEMO_STEPS:-20}" --set resolution=128,128 --set min_bucket_reso=64 \
  --set max_bucket_reso=256 > "$RESULT"

LORA="$("$ROOT/.venv/trainer/bin/python" -c 'import json,sys; print((json.load(open(sys.argv[1]))["pulled"] or [""])[-1])' "$RESULT")"
if [ -z "$LORA" ] || [ ! -f "$LORA" ]; then
  echo "The job finished but its LoRA is not in $CLOUDLORA_LORA_DIR (see $RESULT)." >&2
  exit 1
fi
NAME="$(basename "$LORA" .safetensors)"
echo
echo "== done. The LoRA landed in $CLOUDLORA_LORA_DIR: $LORA"
ls -l "$CLOUDLORA_LORA_DIR/$NAME".*
echo "Sidecar (the Lora card's activation text, SD version, notes):"
cat "$CLOUDLORA_LORA_DIR/$NAME.json"; echo
echo "In the WebUI it lands in models/Lora; use it as <lora:$NAME:1> cldemo in txt2img."
