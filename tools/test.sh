#!/usr/bin/env bash
# The README's test command: sets up both environments (idempotent), then runs every test suite.
#   tests/trainer  under the trainer's stack (.venv/trainer: torch 2.13 CPU, diffusers, peft, ...)
#   tests/webui    under A1111 1.10.1's pins (.venv/webui), incl. S3 (SeaweedFS), moto, and the browser tests
# Fails when any test fails or when a suite ran no test. Screenshots go to artifacts/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source tools/env.sh
env_webui
env_trainer
env_browser
export CLOUDLORA_TEST_TRAINER_PYTHON="$ROOT/.venv/trainer/bin/python"
mkdir -p artifacts

status=0
for suite in trainer webui; do
  echo "== tests/$suite"
  set +e
  ".venv/$suite/bin/python" -m pytest "tests/$suite" -q -p no:cacheprovider "$@"
  rc=$?
  set -e
  # 5 = no tests collected: that is a failure too.
  if [ "$rc" -ne 0 ]; then echo "tests/$suite failed (pytest exit $rc)"; status=1; fi
done
exit $status
