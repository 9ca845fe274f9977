#!/usr/bin/env bash
# Creates the two environments the project needs, idempotently (a re-run only fixes what is missing):
#   .venv/webui    Python 3.10 pinned like A1111 1.10.1 (tools/a1111-pins.txt) + the extension + test tools
#   .venv/trainer  the trainer's stack: torch 2.13.0 (CPU wheel here) + exactly cloud_backend/requirements-lock.txt
#   .venv/trainer-tf<V>  the same with another transformers (env_trainer_variant V; TRANSFORMERS_VARIANTS)
# Source it and call `env_webui`, `env_trainer`, `env_trainer_variant`, `env_browser`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENVS="$ROOT/.venv"

_python_for() {  # an interpreter of the wanted minor version that really runs, else python3
  local p
  for p in "$HOME"/.pyenv/versions/"$1".*/bin/python "/usr/bin/python$1" "$(command -v "python$1" 2>/dev/null)"; do
    if [ -n "$p" ] && [ -x "$p" ] && "$p" -c 'import venv' >/dev/null 2>&1; then echo "$p"; return; fi
  done
  command -v python3
}

_pip() {  # pip, quiet, without the warnings about this machine's partial local mirrors
  "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

_stamp_ok() { [ -f "$1/.stamp" ] && [ "$(cat "$1/.stamp")" = "$2" ]; }

env_webui() {
  local v="$VENVS/webui" want
  want="$(cat "$ROOT/tools/a1111-pins.txt" "$ROOT/pyproject.toml" "$ROOT/setup.py" | sha256sum | cut -c1-16)"
  if _stamp_ok "$v" "$want"; then return; fi
  echo "== setting up $v (A1111 1.10.1 pins)"
  [ -x "$v/bin/python" ] || "$(_python_for 3.10)" -m venv "$v"
  _pip "$v/bin/python" -m pip install -q --upgrade "pip>=23" "setuptools>=64,<70" wheel
  _pip "$v/bin/python" -m pip install -q -r "$ROOT/tools/a1111-pins.txt"
  _pip "$v/bin/python" -m pip install -q -c "$ROOT/tools/a1111-pins.txt" -e "$ROOT[dev]"
  echo "$want" > "$v/.stamp"
}

# The test tools of .venv/host (tests/host): what the suite itself imports, nothing of this project's dependencies.
HOST_TEST_TOOLS='pytest>=7.4,<9 pytest-timeout>=2.3,<3 playwright>=1.40,<2'

env_host() {  # .venv/host: a WebUI venv as A1111 1.10.1 leaves it, WITHOUT this project (tests/host installs it as A1111 does)
  local v="$VENVS/host" want
  want="$(cat "$ROOT/tools/a1111-pins.txt"; echo "torch==2.13.0 $HOST_TEST_TOOLS")"
  want="$(echo "$want" | sha256sum | cut -c1-16)"
  if _stamp_ok "$v" "$want"; then return; fi
  echo "== setting up $v (A1111 1.10.1 pins + torch 2.13.0, no Cloud LoRA Trainer)"
  rm -rf "$v"  # from scratch: what the extension's install.py adds must not survive a rebuild
  # Python 3.11: the only local torch wheel is cp311 (A1111 1.10.1 supports 3.10 and 3.11).
  "$(_python_for 3.11)" -m venv "$v"
  _pip "$v/bin/python" -m pip install -q --upgrade "pip>=23" "setuptools>=64,<70" wheel
  # shellcheck disable=SC2086  # HOST_TEST_TOOLS is a list of requirements
  _pip "$v/bin/python" -m pip install -q -r "$ROOT/tools/a1111-pins.txt" "torch==2.13.0" $HOST_TEST_TOOLS
  _pip "$v/bin/python" -m pip check >/dev/null || { "$v/bin/python" -m pip check; return 1; }
  # What "before the extension was installed" means: tests/host puts the venv back to this list before each run.
  "$v/bin/python" -m pip freeze --all > "$v/pristine-freeze.txt"
  echo "$want" > "$v/.stamp"
}

_trainer_venv() {  # _trainer_venv DIR STAMP-INPUT REQUIREMENTS-FILE: torch 2.13.0 + those requirements, exactly
  local v="$1" want="$2" reqs="$3"
  if _stamp_ok "$v" "$want"; then return; fi
  echo "== setting up $v (trainer stack, CPU torch)"
  rm -rf "$v"  # from scratch: a lock is exact only in a venv that holds nothing else
  "$(_python_for 3.11)" -m venv "$v"
  _pip "$v/bin/python" -m pip install -q --upgrade "pip>=23" wheel
  # torch first and pinned: an unpinned torch would pull several GB of CUDA packages. Then the requirements with
  # torch held where it is (the lock never moves an installed torch).
  _pip "$v/bin/python" -m pip install -q "torch==2.13.0"
  _pip "$v/bin/python" -m pip install -q -r "$reqs" "torch==2.13.0" "pytest>=7.4,<9" "pytest-timeout>=2.3,<3"
  # The project itself for the tests and `cloudlora` (boto3, platformdirs), with every locked package kept.
  _pip "$v/bin/python" -m pip install -q -c "$reqs" -c <(echo "torch==2.13.0") -e "$ROOT"
  _pip "$v/bin/python" -m pip check >/dev/null || { "$v/bin/python" -m pip check; return 1; }
  echo "$want" > "$v/.stamp"
}

env_trainer() {  # .venv/trainer: exactly the lock (cloud_backend/requirements-lock.txt)
  local lock="$ROOT/cloud_backend/requirements-lock.txt"
  _trainer_venv "$VENVS/trainer" "$(cat "$lock" "$ROOT/pyproject.toml" "$ROOT/setup.py" | sha256sum | cut -c1-16)" "$lock"
}

# The transformers versions the text-encoder LoRA is tested with besides the lock's: the oldest the `trainer` range
# allows and the newest 5.x on the index when this line was last changed (tools/check-upstream.sh finds newer ones).
TRANSFORMERS_VARIANTS="4.48.0 5.24.0"

env_trainer_variant() {  # env_trainer_variant VERSION: .venv/trainer-tf<VERSION>, the lock with that transformers
  local version="$1" v="$VENVS/trainer-tf$1" reqs
  reqs="$(mktemp)"
  # The lock without the packages whose versions follow transformers' (pip picks those to fit it).
  grep -viE '^(transformers|diffusers|huggingface[-_]hub|tokenizers|httpx|httpcore|hf-xet)==' \
    "$ROOT/cloud_backend/requirements-lock.txt" > "$reqs"
  { echo "transformers==$version"; grep -oE '"diffusers[^"]*"' "$ROOT/pyproject.toml" | tr -d '"'; } >> "$reqs"
  _trainer_venv "$v" "$(cat "$reqs" "$ROOT/pyproject.toml" "$ROOT/setup.py" | sha256sum | cut -c1-16)" "$reqs"
  rm -f "$reqs"
}

env_browser() {  # Debian's chromium for the Playwright tests
  if command -v chromium >/dev/null 2>&1; then return; fi
  echo "== installing chromium (Debian)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
}
