#!/usr/bin/env bash
# The suite's Windows run on Linux (issue 18, part 4): the tests of uploads, local jobs, locks and the CLI, again with
# fcntl, resource, termios, pwd and grp unimportable and cloudlora.system.WINDOWS true, in pytest and in every
# process it starts (runner, trainer: they inherit PYTHONPATH and CLOUDLORA_PLATFORM). See
# tests/windows_mode/sitecustomize.py for how, and tests/windows_mode/static_check.py for the static half.
#   tools/test_windows_mode.sh [PYTEST-ARGS...]      (PYTHON=... picks the interpreter; default .venv/webui)
# Needs the environments of tools/env.sh and CLOUDLORA_TEST_TRAINER_PYTHON, as tools/test.sh sets them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-.venv/webui/bin/python}"
# What "Done when" names: model and dataset upload to the local store, a local job (create, status, stop, resume,
# pull) with the real trainer, locks, the CLI; plus the Windows file behaviour. About 3-4 minutes on 2 cores.
FILES=(
  tests/webui/test_windows_files.py
  tests/webui/test_foundation_cli.py
  tests/webui/test_assets_models.py
  tests/webui/test_assets_datasets.py
  tests/webui/test_assets_concurrency.py
  tests/webui/test_jobs_train_cli.py
  tests/webui/test_jobs_local_machinery.py
  tests/webui/test_jobs_truth.py
  tests/webui/test_jobs_resume.py
  tests/webui/test_jobs_end_to_end.py
  tests/webui/test_captions_cli.py
  tests/webui/test_captions_review.py
  tests/webui/test_jobs_captions.py
)
# POSIX designs that Windows replaces with a Job object (processes.children_die_with_me), which a Linux process
# cannot have: a trainer dying with its killed runner through the parent-death signal, and a trainer outliving its
# runner while it holds the inherited flock. With system.WINDOWS forced, the runner arms neither.
DESELECT=(
  --deselect "tests/webui/test_jobs_truth.py::test_killing_the_runner_stops_its_trainer_frees_the_gpu_and_the_job_can_be_resumed"
  --deselect "tests/webui/test_jobs_truth.py::test_a_trainer_that_outlives_its_runner_holds_the_gpu_can_be_stopped_or_finishes_and_is_pulled"
)
export CLOUDLORA_PLATFORM=windows
export PYTHONPATH="$ROOT/tests/windows_mode${PYTHONPATH:+:$PYTHONPATH}"
# A run that does not really refuse the modules would pass for the wrong reason: check first, in a child process.
if ! "$PYTHON" -c '
import cloudlora.system as s
assert s.WINDOWS, "system.WINDOWS is not true"
try:
    exec("import fcntl", {"__name__": "cloudlora.probe"})
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("the extension can still import fcntl")'; then
  echo "windows mode is not active (tests/windows_mode/sitecustomize.py not on PYTHONPATH?)" >&2
  exit 1
fi
exec "$PYTHON" -m pytest "${FILES[@]}" "${DESELECT[@]}" -q -p no:cacheprovider "$@"
