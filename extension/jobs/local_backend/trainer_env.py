"""The local backend's trainer interpreter: a configured one, or a managed venv created on first use.

The trainer cannot run in the WebUI's venv (its transformers is far too old), so it gets its own venv under
<data dir>/trainer-venv, made with the WebUI's own Python. Its torch comes from `torch_choice`: the WebUI's when it is
within the range the lock is tested with (pip then takes the wheel from its cache), else a build for this machine's
accelerator (CUDA from the PyTorch index, the CPU build on a machine without an NVIDIA GPU). Then the trainer's lock
(cloud_backend/requirements-lock.txt, the exact versions the tests and the container use) with that torch held where
it is, and on CUDA the CUDA-only extras (bitsandbytes). This package is not installed there: the runner starts the
trainer through the bootstrap, which maps `cloudlora_backend` from the extension folder.

Setup reports what it does through `progress` (pip_progress.SetupProgress: package, size, bytes, time left) and a
failure raises SetupError with the reason in words and the fix.

Stdlib only (+ settings): the detached runner calls ensure() and its output goes into the job's log.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from ... import bootstrap, system
from . import pip_progress, torch_choice

ROOT = Path(__file__).resolve().parents[3]  # the extension folder (pyproject.toml, tools/)
LOCK = ROOT / "cloud_backend" / "requirements-lock.txt"
CUDA_LOCK = ROOT / "cloud_backend" / "requirements-cuda.txt"
STAMP = ".cloudlora-ready"

Log = Callable[[str], None]
host_torch = torch_choice.host_torch


class SetupError(RuntimeError):
    """The trainer environment could not be set up: `reason` in words and the `fix`."""

    def __init__(self, reason: str, fix: str = ""):
        super().__init__(reason + (f" Fix: {fix}" if fix else ""))
        self.reason, self.fix = reason, fix


def venv_dir() -> Path:
    from ...settings import data_dir

    return data_dir() / "trainer-venv"


def venv_python(venv: Path) -> Path:
    return venv / system.VENV_SCRIPTS / system.VENV_PYTHON


def configured_python(settings) -> str:
    """The interpreter from settings.trainer_python / CLOUDLORA_TRAINER_PYTHON, or "" for the managed venv."""
    return (getattr(settings, "trainer_python", "") or os.environ.get("CLOUDLORA_TRAINER_PYTHON", "")).strip()


def _wanted_stamp(torch_version: str = "") -> str:
    """What the venv was built from: the lock files, the host's torch (a change of WebUI torch rebuilds it) and
    the extension's place."""
    reqs = "".join(p.read_text(encoding="utf-8") for p in (LOCK, CUDA_LOCK) if p.exists())
    return json.dumps({"torch": torch_version or host_torch(), "reqs": reqs, "root": str(ROOT)}, sort_keys=True)


def is_ready(venv: Path | None = None) -> bool:
    venv = venv or venv_dir()
    stamp = venv / STAMP
    return venv_python(venv).exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == _wanted_stamp()


def pip_commands(py: str, choice: torch_choice.Choice, installed_torch: str = "") -> list[list[str]]:
    """The install commands after the venv exists: pip itself, torch, then the lock with that torch held.
    `installed_torch` is the version the torch step gave (the lock command holds exactly it)."""
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "raw"]
    cmds = [[py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--upgrade", "pip>=24.1",
             "setuptools>=64", "wheel"],
            pip + choice.pip_args()]
    held = [f"torch=={installed_torch}"] if installed_torch else [choice.requirement]
    cmds.append(pip + ["-r", str(LOCK)] + held)
    if choice.kind == "cuda":
        cmds.append(pip + ["-r", str(CUDA_LOCK)] + held)
    return cmds


def plan(settings=None, log: Log | None = None) -> torch_choice.Choice:
    """The torch choice for this machine, after checking that its index answers (else pip's own sources)."""
    machine = torch_choice.detect()
    choice = torch_choice.choose(machine, torch_choice.lock_range(LOCK), torch_choice.index_setting(settings))
    if choice.index and not torch_choice.reachable(choice.index):
        choice = torch_choice.fallback(choice, machine)
    if log:
        log(f"torch: {choice.why}.")
        for note in choice.notes:
            log(note)
    return choice


def _venv_ok() -> None:
    """The WebUI's Python can make a venv with pip (one-click Windows packages may lack ensurepip)."""
    if importlib.util.find_spec("venv") is None or importlib.util.find_spec("ensurepip") is None:
        raise SetupError(f"This Python ({sys.executable}) cannot create virtual environments with pip (no "
                         "venv/ensurepip module; some one-click WebUI packages ship without it).",
                         "Install Python 3.10-3.13 from python.org and set CLOUDLORA_TRAINER_PYTHON to a venv made "
                         "with it that has the trainer's packages, or use the SageMaker backend.")


def ensure(log: Log = print, venv: Path | None = None, progress: Callable[[dict], None] | None = None,
           settings=None) -> str:
    """Creates (or repairs) the managed venv, streaming pip's output to `log` and its state to `progress`;
    returns its python. Raises SetupError (in words, with the fix) when it cannot."""
    venv = venv or venv_dir()
    py = venv_python(venv)
    if is_ready(venv):
        return str(py)
    state = pip_progress.SetupProgress()
    report = (lambda: progress(state.as_dict())) if progress else (lambda: None)
    log(f"Setting up the trainer environment in {venv} (first use).")
    report()
    choice = plan(settings, log)
    if not py.exists():
        _venv_ok()
        venv.parent.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "venv", str(venv)], log, state, report)
    steps = pip_commands(str(py), choice)
    state.step = "Updating pip"
    _run(steps[0], log, state, report)
    state.step = "Checking which torch to download"
    report()
    resolution = torch_choice.resolve(str(py), choice)
    if resolution.error:
        reason, fix = pip_progress.explain(resolution.error)
        raise SetupError(reason, fix)
    refused = torch_choice.refusal(choice, resolution)
    if refused:
        raise SetupError(refused)
    if choice.named and choice.kind != "cuda" and resolution.cuda_packages:
        log("The index you set offers a CUDA build of torch; it is installed as you asked (it also runs on the CPU).")
    log(f"torch step: {', '.join(f'{n} {v}' for n, v, _ in resolution.packages)} "
        f"({torch_choice.human_size(resolution.total_bytes)} to download at most; pip's cache may hold some).")
    state.step = f"Installing torch {resolution.torch_version}"
    _run(steps[1], log, state, report)
    installed = _installed_torch(str(py)) or resolution.torch_version
    state.step = "Installing the trainer's packages"
    for cmd in pip_commands(str(py), choice, installed)[2:]:
        _run(cmd, log, state, report)
    (venv / STAMP).write_text(_wanted_stamp(), encoding="utf-8")
    log(f"Trainer environment ready (torch {installed}, {choice.kind}) in {time.time() - state.started:.0f} s.")
    return str(py)


def _installed_torch(py: str) -> str:
    try:
        out = subprocess.run([py, "-c", "import importlib.metadata as m; print(m.version('torch'))"],
                             capture_output=True, text=True, timeout=60)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _run(cmd: list[str], log: Log, state: pip_progress.SetupProgress | None = None,
         report: Callable[[], None] = lambda: None) -> None:
    log("$ " + " ".join(cmd))
    env = {**os.environ, "PYTHONUTF8": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            encoding="utf-8", errors="replace", env=env)
    assert proc.stdout is not None
    tail: list[str] = []
    last_report = 0.0
    for line in proc.stdout:
        line = line.rstrip()
        if state is not None and state.update(line):
            if time.time() - last_report > 1.0:  # pip's raw progress comes every 256 KiB: once a second is enough
                last_report = time.time()
                report()
            continue
        if "is ignored: it is neither a file nor a directory" in line:
            continue
        log(line)
        tail = (tail + [line])[-40:]
        report()
    if proc.wait() != 0:
        reason, fix = pip_progress.explain("\n".join(tail), " ".join(cmd))
        log(f"setup failed: {reason}" + (f" Fix: {fix}" if fix else ""))
        raise SetupError(reason, fix)


def resolve(settings) -> tuple[str, bool]:
    """(interpreter, ready). A configured interpreter counts as ready; the managed venv may need ensure()."""
    configured = configured_python(settings)
    if configured:
        return configured, True
    venv = venv_dir()
    return str(venv_python(venv)), is_ready(venv)


def probe(python: str, timeout: float = 60.0) -> dict:
    """Asks the interpreter for its torch version and CUDA (a subprocess: the WebUI side never imports torch)."""
    code = ("import json,sys\n"
            "try:\n import torch\n d={'torch':torch.__version__,'cuda':torch.cuda.is_available(),"
            "'gpu':(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')}\n"
            "except Exception as e:\n d={'error':repr(e)}\n"
            "try:\n import cloudlora_backend.trainer\n d['trainer']=True\nexcept Exception as e:\n"
            " d['trainer']=False; d.setdefault('error',repr(e))\n"
            "print(json.dumps(d))")
    try:
        out = subprocess.run(bootstrap.command(python, "-c", code), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"error": str(err)}
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": (out.stderr or out.stdout).strip()[-500:]}


_PREDICTED: dict = {}


def predict(settings=None) -> dict:
    """What the first local job's setup will do, checked before any job: {"ok", "detail", "fix"}.

    The lock installs on this Python (pip's dry run, no download), which torch the venv gets and its download size
    (pip's dry run of the torch step), the venv module, and the free disk space. Cached per process for 10 minutes.
    """
    choice = plan(settings)
    key = (sys.executable, _wanted_stamp(), choice, str(venv_dir()))
    hit = _PREDICTED.get(key)
    if hit and time.time() - hit[0] < 600:
        return hit[1]
    out = _predict(choice)
    _PREDICTED[key] = (time.time(), out)
    return out


def _predict(choice: torch_choice.Choice) -> dict:
    try:
        _venv_ok()
    except SetupError as err:
        return {"ok": False, "detail": err.reason, "fix": err.fix}
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps", "--quiet",
           "--disable-pip-version-check", "-r", str(LOCK)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, errors="replace",
                              env={**os.environ, "PYTHONUTF8": "1"})
        lock_error = proc.stderr if proc.returncode else ""
    except (OSError, subprocess.SubprocessError) as err:
        lock_error = str(err)
    if lock_error:
        reason, fix = pip_progress.explain(lock_error)
        return {"ok": False, "detail": f"The trainer's packages cannot install on this Python: {reason}", "fix": fix}
    resolution = torch_choice.resolve(sys.executable, choice)
    if resolution.error:
        reason, fix = pip_progress.explain(resolution.error)
        return {"ok": False, "detail": f"torch for the trainer cannot be installed: {reason} ({choice.why})",
                "fix": fix}
    refused = torch_choice.refusal(choice, resolution)
    if refused:
        return {"ok": False, "detail": refused, "fix": ""}
    need = torch_choice.VENV_GIB[choice.kind]
    where = venv_dir()
    while not where.exists() and where.parent != where:
        where = where.parent
    free = shutil.disk_usage(where).free / 2**30
    size = torch_choice.human_size(resolution.total_bytes)
    what = (f"the first local job sets up the trainer environment in {venv_dir()}: torch "
            f"{resolution.torch_version} ({choice.kind}; {choice.why}), {size} to download for torch, plus the "
            f"trainer's packages; about {need:.0f} GB on disk")
    if free < need:
        return {"ok": False, "detail": f"{what}, but only {free:.1f} GB are free there.",
                "fix": "Free disk space there, or set CLOUDLORA_DATA_DIR to a drive with room."}
    return {"ok": True, "detail": f"{what} ({free:.0f} GB free).", "fix": ""}


def status(settings, *, probe_interpreter: bool = True, predict_setup: bool = True) -> dict:
    """For the doctor: {"interpreter", "managed", "ready", "torch", "cuda", "gpu", "detail", "fix", "status"?}."""
    python, ready = resolve(settings)
    managed = not configured_python(settings)
    out = {"interpreter": python, "managed": managed, "ready": ready, "torch": "", "cuda": False, "gpu": "",
           "detail": "", "fix": ""}
    if managed and not ready:
        out["detail"] = f"The trainer environment {venv_dir()} is not set up yet; it is created on the first local job."
        out["fix"] = "Start a local training job (it sets the environment up with visible progress), or set " \
                     "CLOUDLORA_TRAINER_PYTHON to an interpreter that has the trainer installed."
        if predict_setup:
            seen = predict(settings)
            out["detail"] = seen["detail"][:1].upper() + seen["detail"][1:]
            if not seen["ok"]:
                out.update(status="problem", fix=seen["fix"])
        return out
    if not Path(python).exists():
        out.update(ready=False, detail=f"The trainer interpreter {python} does not exist.",
                   fix="Fix CLOUDLORA_TRAINER_PYTHON / the trainer_python setting, or clear it to use the managed venv.")
        return out
    if probe_interpreter:
        info = probe(python)
        out.update(torch=info.get("torch", ""), cuda=bool(info.get("cuda")), gpu=info.get("gpu", ""))
        torch_range = torch_choice.lock_range(LOCK)
        if "error" in info or not info.get("trainer"):
            out.update(ready=False, detail=f"{python} cannot run the trainer: {info.get('error', 'missing package')}",
                       fix="Install the trainer's packages into it (`pip install -r cloud_backend/requirements-lock.txt`"
                           " with its torch kept), or clear the setting to use the managed venv.")
        elif not torch_range.admits(out["torch"]):
            out.update(ready=False, detail=f"{python} has torch {out['torch']}, outside the range the trainer is "
                                           f"tested with ({torch_range.requirement})",
                       fix=f"Install a torch in that range into it (`pip install \"{torch_range.requirement}\"`), "
                           "or clear CLOUDLORA_TRAINER_PYTHON / the trainer_python setting to use the managed venv.")
        else:
            out["detail"] = f"torch {out['torch']}, " + (f"CUDA on {out['gpu']}" if out["cuda"] else "no CUDA GPU (CPU only)")
    return out


if __name__ == "__main__":  # `python -m cloudlora.jobs.local_backend.trainer_env` sets the venv up by hand
    t0 = time.monotonic()
    print(ensure())
    print(f"done in {time.monotonic() - t0:.0f} s")
