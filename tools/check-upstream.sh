#!/usr/bin/env bash
# Catches the next upstream break before users do.
#
#   bash tools/check-upstream.sh [PYTEST-ARGS...]
#
# Builds the trainer environment at the NEWEST versions the `trainer` ranges in pyproject.toml allow
# (.venv/upstream, from scratch, torch 2.13.0 held), runs the trainer's smoke tests (the `transformers_matrix` set:
# loading, text-encoder LoRA, training through the entrypoint, save and load back) there and in the lock's
# environment (.venv/trainer), and prints both results side by side with every version that differs.
#
# Exit 0: upstream passes too, so bumping a line of cloud_backend/requirements-lock.txt to the upstream version is
# safe (then `bash tools/test.sh` proves it, as CI does). Exit 1: upstream breaks something the lock does not; the
# failing tests say what. Needs the package index; installs nothing outside .venv/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source tools/env.sh
env_trainer

UP="$VENVS/upstream"
echo "== building $UP at the newest versions the ranges allow"
rm -rf "$UP"
"$(_python_for 3.11)" -m venv "$UP"
_pip "$UP/bin/python" -m pip install -q --upgrade "pip>=23" wheel
_pip "$UP/bin/python" -m pip install -q "torch==2.13.0"
mapfile -t RANGES < <(python3 -c '
import tomllib
for r in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["trainer"]:
    if not r.lower().startswith("torch"):
        print(r)')
_pip "$UP/bin/python" -m pip install -q --upgrade "${RANGES[@]}" "torch==2.13.0" "pytest>=7.4,<9"
_pip "$UP/bin/python" -m pip install -q -c <(echo "torch==2.13.0") -e "$ROOT"

run_smoke() {  # run_smoke PYTHON LOG -> prints "N passed / M failed"
  set +e
  "$1" -m pytest tests/trainer -m transformers_matrix -q -p no:cacheprovider "${@:3}" > "$2" 2>&1
  set -e
  tail -1 "$2"
}

mkdir -p artifacts
echo "== smoke tests: the lock (.venv/trainer)"
lock_result="$(run_smoke "$VENVS/trainer/bin/python" artifacts/upstream-lock.log "$@")"
echo "== smoke tests: upstream (.venv/upstream)"
up_result="$(run_smoke "$UP/bin/python" artifacts/upstream-newest.log "$@")"

echo
echo "== versions that differ (lock -> upstream)"
python3 - "$VENVS/trainer/bin/python" "$UP/bin/python" <<'PY'
import json, re, subprocess, sys
def versions(python):
    out = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True).stdout
    return {re.sub(r"[-_.]+", "-", p["name"]).lower(): p["version"] for p in json.loads(out)}
lock, up = versions(sys.argv[1]), versions(sys.argv[2])
for name in sorted(set(lock) | set(up)):
    if name != "cloud-lora-trainer" and lock.get(name) != up.get(name):
        print(f"  {name:28} {lock.get(name, '-'):16} -> {up.get(name, '-')}")
PY
echo
echo "== results"
printf "  %-10s %s\n" "lock" "$lock_result" "upstream" "$up_result"
if grep -q "FAILED\|ERROR" artifacts/upstream-newest.log; then
  echo
  echo "== what breaks upstream (full log: artifacts/upstream-newest.log)"
  grep -E "^(FAILED|ERROR)" artifacts/upstream-newest.log | sed 's/^/  /'
  exit 1
fi
echo "upstream passes: a lock bump to these versions is a one-line change per package; run bash tools/test.sh after."
echo "(upstream is resolved for this Python; the lock must install on 3.10-3.13 too: python3 tools/trainer_lock.py check)"
