#!/usr/bin/env bash
# The README's test command: sets up the environments (idempotent), then runs every test suite.
#   tests/trainer  under the trainer's lock (.venv/trainer: torch 2.13 CPU + cloud_backend/requirements-lock.txt)
#                  and its text-encoder LoRA tests again under each transformers of TRANSFORMERS_VARIANTS
#   tests/webui    under A1111 1.10.1's pins (.venv/webui), incl. S3 (SeaweedFS), moto, and the browser tests
#   tests/host     a fake A1111 1.10.1 (.venv/host: its pins + torch, NOT this project) with the extension loaded
#                  from a git clone in extensions/ as Install from URL leaves it; real local jobs in the managed venv
# Fails when any test fails or when a suite ran no test. Screenshots go to artifacts/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source tools/env.sh
env_webui
env_host
env_trainer
for version in $TRANSFORMERS_VARIANTS; do env_trainer_variant "$version"; done
env_browser
export CLOUDLORA_TEST_TRAINER_PYTHON="$ROOT/.venv/trainer/bin/python"
mkdir -p artifacts

status=0
run_suite() {  # run_suite NAME PYTHON PYTEST-ARGS...
  local name="$1" python="$2"
  shift 2
  echo "== $name"
  set +e
  "$python" -m pytest "$@" -q -p no:cacheprovider
  local rc=$?
  set -e
  # 5 = no tests collected: that is a failure too.
  if [ "$rc" -ne 0 ]; then echo "$name failed (pytest exit $rc)"; status=1; fi
}

run_suite "tests/trainer" .venv/trainer/bin/python tests/trainer "$@"
# The text-encoder LoRA (inject, train, save, load back) under the other transformers versions the range allows.
for version in $TRANSFORMERS_VARIANTS; do
  run_suite "tests/trainer with transformers $version" ".venv/trainer-tf$version/bin/python" \
    -m transformers_matrix tests/trainer "$@"
done
run_suite "tests/webui" .venv/webui/bin/python tests/webui "$@"
run_suite "tests/host" .venv/host/bin/python tests/host "$@"
exit $status
