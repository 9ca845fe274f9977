#!/usr/bin/env bash
# The README's test command: sets up the environments (idempotent), then runs every test suite.
#   tests/trainer  under the trainer's lock (.venv/trainer: torch 2.13 CPU + cloud_backend/requirements-lock.txt)
#                  and its text-encoder LoRA tests again under each transformers of TRANSFORMERS_VARIANTS
#   tests/webui    under A1111 1.10.1's pins (.venv/webui), incl. S3 (SeaweedFS), moto, and the browser tests
#   tests/host     a fake A1111 1.10.1 with the extension loaded from a git clone in extensions/ as Install from URL
#                  leaves it, on each host stack users run (NOT this project installed): .venv/host = A1111 1.10.1
#                  (Python 3.10, torch 2.1.2, its pins) and .venv/host-forge = Forge (Python 3.10, torch 2.3.1,
#                  gradio 4.40); real local jobs in the managed trainer venv each builds (its torch from
#                  .cache/torch-index, this machine's stand-in for the PyTorch index)
# Fails when any test fails or when a suite ran no test. Screenshots go to artifacts/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source tools/env.sh
env_webui
env_torch_index
env_host
env_host_forge
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
# The uploads, local jobs, locks and CLI again as on Windows: Unix-only modules refused to the project's own code and
# CLOUDLORA_PLATFORM=windows (tests/windows_mode/).
echo "== tests/webui, Windows mode (tools/test_windows_mode.sh)"
if ! tools/test_windows_mode.sh "$@"; then echo "tests/webui, Windows mode failed"; status=1; fi
run_suite "tests/host (A1111 1.10.1 stack)" .venv/host/bin/python tests/host "$@"
run_suite "tests/host (Forge stack)" .venv/host-forge/bin/python tests/host "$@"
# Uploads and a local job through REST in the A1111 stack again as on Windows (tests/windows_mode, as above).
CLOUDLORA_PLATFORM=windows run_suite "tests/host (A1111 1.10.1 stack, Windows mode)" .venv/host/bin/python \
  tests/host/test_jobs_in_the_host.py -k "managed_venv" "$@"
exit $status
