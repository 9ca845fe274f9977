#!/usr/bin/env bash
# Creates the two environments the project needs, idempotently (a re-run only fixes what is missing):
#   .venv/webui    Python 3.10 pinned like A1111 1.10.1 (tools/a1111-pins.txt) + the extension + test tools
#   .venv/trainer  the trainer's stack: torch 2.13.0 (CPU wheel here) + diffusers/peft/transformers/...
# Source it and call `env_webui`, `env_trainer`, `env_browser`.
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

env_trainer() {
  local v="$VENVS/trainer" want
  want="$(cat "$ROOT/tools/trainer-requirements.txt" "$ROOT/pyproject.toml" "$ROOT/setup.py" | sha256sum | cut -c1-16)"
  if _stamp_ok "$v" "$want"; then return; fi
  echo "== setting up $v (trainer stack, CPU torch)"
  [ -x "$v/bin/python" ] || "$(_python_for 3.11)" -m venv "$v"
  _pip "$v/bin/python" -m pip install -q --upgrade "pip>=23" "setuptools>=64" wheel
  # torch first and pinned: an unpinned torch would pull several GB of CUDA packages.
  _pip "$v/bin/python" -m pip install -q "torch==2.13.0"
  _pip "$v/bin/python" -m pip install -q -r "$ROOT/tools/trainer-requirements.txt" "pytest>=7.4,<9"
  # open-clip-torch only for its BPE vocabulary file; its deps (torchvision) have no CPU build here.
  _pip "$v/bin/python" -m pip install -q --no-deps "open-clip-torch>=2.20,<4"
  _pip "$v/bin/python" -m pip install -q -e "$ROOT"  # the CLI too (boto3, tomlkit, platformdirs)
  echo "$want" > "$v/.stamp"
}

env_browser() {  # Debian's chromium for the Playwright tests
  if command -v chromium >/dev/null 2>&1; then return; fi
  echo "== installing chromium (Debian)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
}
