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

# The editable installs of this project, one at a time: tools/test.sh sets venvs up at once, and setuptools writes its
# build files into the checkout.
_one_at_a_time() {
  mkdir -p "$VENVS"
  if command -v flock >/dev/null 2>&1; then flock "$VENVS/.editable.lock" "$@"; else "$@"; fi
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
  _pip _one_at_a_time "$v/bin/python" -m pip install -q -c "$ROOT/tools/a1111-pins.txt" -e "$ROOT[dev]"
  echo "$want" > "$v/.stamp"
}

# The test tools of the host venvs (tests/host): what the suite itself imports, nothing of this project's dependencies.
HOST_TEST_TOOLS='pytest>=7.4,<9 pytest-timeout>=2.3,<3 playwright>=1.40,<2'

# The host stacks users really run (../shared/REFERENCE.md): Python 3.10 with the WebUI's own torch, as PyPI serves it
# (the CUDA 12.1 builds, ~2.5 GB with their nvidia-* packages; downloaded once per machine into pip's cache).
A1111_TORCH="torch==2.1.2 torchvision==0.16.2"
FORGE_TORCH="torch==2.3.1 torchvision==0.18.1"

_host_venv() {  # _host_venv DIR PINS-FILE "TORCH REQS": a WebUI venv as the WebUI leaves it, WITHOUT this project
  local v="$1" pins="$2" torch="$3" want
  want="$(cat "$pins"; echo "$torch $HOST_TEST_TOOLS")"
  want="$(echo "$want" | sha256sum | cut -c1-16)"
  if _stamp_ok "$v" "$want"; then return; fi
  echo "== setting up $v (Python 3.10, $(basename "$pins"), $torch; no Cloud LoRA Trainer)"
  rm -rf "$v"  # from scratch: what the extension's install.py adds must not survive a rebuild
  "$(_python_for 3.10)" -m venv "$v"
  _pip "$v/bin/python" -m pip install -q --upgrade "pip>=23" "setuptools>=64,<70" wheel
  # shellcheck disable=SC2086  # torch and HOST_TEST_TOOLS are lists of requirements
  _pip "$v/bin/python" -m pip install -q -r "$pins" $torch $HOST_TEST_TOOLS
  _pip "$v/bin/python" -m pip check >/dev/null || { "$v/bin/python" -m pip check; return 1; }
  # What "before the extension was installed" means: tests/host puts the venv back to this list before each run.
  "$v/bin/python" -m pip freeze --all > "$v/pristine-freeze.txt"
  echo "$want" > "$v/.stamp"
}

env_host() {  # .venv/host: A1111 1.10.1's stack: Python 3.10, torch 2.1.2 + torchvision 0.16.2, its pins
  _host_venv "$VENVS/host" "$ROOT/tools/a1111-pins.txt" "$A1111_TORCH"
}

env_host_forge() {  # .venv/host-forge: Forge's stack: Python 3.10, torch 2.3.1, gradio 4.40 and its companions
  _host_venv "$VENVS/host-forge" "$ROOT/tools/forge-pins.txt" "$FORGE_TORCH"
}

# The trainer's floor torch (the `# torch:` line of the lock) for Python 3.10, as PyPI serves it, in a folder of
# wheels that the host tests name as the PyTorch index (CLOUDLORA_TORCH_INDEX): CI cannot reach download.pytorch.org,
# and PyPI's only Linux x86_64 build is the CUDA one (~3.7 GB with its nvidia-* packages; once per machine).
env_torch_index() {
  local dir="$ROOT/.cache/torch-index/cp310" floor
  floor="$(sed -n 's/^# torch: >=\([0-9.]*\),.*/\1/p' "$ROOT/cloud_backend/requirements-lock.txt")"
  if _stamp_ok "$dir" "$floor"; then return; fi
  echo "== downloading torch $floor for Python 3.10 into $dir (the host tests' PyTorch index)"
  mkdir -p "$dir"
  _pip "$(_python_for 3.10)" -m pip download -q --only-binary=:all: -d "$dir" "torch==$floor"
  echo "$floor" > "$dir/.stamp"
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
  _pip _one_at_a_time "$v/bin/python" -m pip install -q -c "$reqs" -c <(echo "torch==2.13.0") -e "$ROOT"
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
