"""The local backend's trainer interpreter: a configured one, or a managed venv created on first use.

The trainer cannot run in the WebUI's venv (its transformers is far too old), so it gets its own venv under
<data dir>/trainer-venv. To avoid downloading another 2-3 GB torch, the venv pins the WebUI's own torch version
(read from package metadata, never imported), so pip takes the wheel from its cache; CUDA builds
("2.1.2+cu121") get the matching PyTorch index. Then the trainer's lock (cloud_backend/requirements-lock.txt, the
exact versions the tests and the container use) with that torch held where it is, and on a CUDA torch the CUDA-only
extras (bitsandbytes). This package is not installed there: the runner starts the trainer through the bootstrap,
which maps `cloudlora_backend` from the extension folder.

Stdlib only (+ settings): the detached runner calls ensure() and its output goes into the job's log.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from .. import bootstrap

ROOT = Path(__file__).resolve().parents[2]  # the extension folder (pyproject.toml, tools/)
LOCK = ROOT / "cloud_backend" / "requirements-lock.txt"
CUDA_LOCK = ROOT / "cloud_backend" / "requirements-cuda.txt"
STAMP = ".cloudlora-ready"

Log = Callable[[str], None]


def venv_dir() -> Path:
    from ..settings import data_dir

    return data_dir() / "trainer-venv"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def configured_python(settings) -> str:
    """The interpreter from settings.trainer_python / CLOUDLORA_TRAINER_PYTHON, or "" for the managed venv."""
    return (getattr(settings, "trainer_python", "") or os.environ.get("CLOUDLORA_TRAINER_PYTHON", "")).strip()


def host_torch() -> str:
    """The WebUI's torch version from its metadata (never imports torch); "" when it has none."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return ""


def _wanted_stamp(torch_version: str) -> str:
    reqs = "".join(p.read_text(encoding="utf-8") for p in (LOCK, CUDA_LOCK) if p.exists())
    return json.dumps({"torch": torch_version, "reqs": reqs, "root": str(ROOT)}, sort_keys=True)


def is_ready(venv: Path | None = None) -> bool:
    venv = venv or venv_dir()
    stamp = venv / STAMP
    return venv_python(venv).exists() and stamp.exists() and \
        stamp.read_text(encoding="utf-8") == _wanted_stamp(host_torch())


def pip_commands(py: str, torch_version: str) -> list[list[str]]:
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check"]
    cmds = [[py, "-m", "pip", "install", "-q", "--upgrade", "pip>=23", "setuptools>=64", "wheel"]]
    if torch_version:
        torch_cmd = pip + [f"torch=={torch_version}"]
        local = torch_version.partition("+")[2]
        if local.startswith(("cu", "rocm")):
            torch_cmd += ["--extra-index-url", f"https://download.pytorch.org/whl/{local}"]
        cmds.append(torch_cmd)
    else:
        cmds.append(pip + ["torch>=2.1,<3"])
    # The torch requirement beside the lock holds torch where it is: pip may not move it to satisfy anything.
    held = [f"torch=={torch_version}"] if torch_version else []
    cmds.append(pip + ["-r", str(LOCK)] + held)
    if torch_version.partition("+")[2].startswith("cu"):
        cmds.append(pip + ["-r", str(CUDA_LOCK)] + held)
    return cmds


def ensure(log: Log = print, venv: Path | None = None) -> str:
    """Creates (or repairs) the managed venv, streaming pip's output to `log`; returns its python."""
    venv = venv or venv_dir()
    py = venv_python(venv)
    torch_version = host_torch()
    if is_ready(venv):
        return str(py)
    log(f"Setting up the trainer environment in {venv} (first use; this downloads the trainer's packages, "
        f"reusing torch {torch_version or '(latest)'}).")
    if not py.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "venv", str(venv)], log)
    for cmd in pip_commands(str(py), torch_version):
        _run(cmd, log)
    (venv / STAMP).write_text(_wanted_stamp(torch_version), encoding="utf-8")
    log("Trainer environment ready.")
    return str(py)


def _run(cmd: list[str], log: Log) -> None:
    log("$ " + " ".join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        log(line.rstrip())
    if proc.wait() != 0:
        raise RuntimeError(f"command failed (exit {proc.returncode}): {' '.join(cmd)}")


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


def status(settings, *, probe_interpreter: bool = True) -> dict:
    """For the doctor: {"interpreter", "managed", "ready", "torch", "cuda", "gpu", "detail", "fix"}."""
    python, ready = resolve(settings)
    managed = not configured_python(settings)
    out = {"interpreter": python, "managed": managed, "ready": ready, "torch": "", "cuda": False, "gpu": "",
           "detail": "", "fix": ""}
    if managed and not ready:
        out["detail"] = f"The trainer environment {venv_dir()} is not set up yet; it is created on the first local job."
        out["fix"] = "Start a local training job (it sets the environment up with visible progress), or set " \
                     "CLOUDLORA_TRAINER_PYTHON to an interpreter that has the trainer installed."
        return out
    if not Path(python).exists():
        out.update(ready=False, detail=f"The trainer interpreter {python} does not exist.",
                   fix="Fix CLOUDLORA_TRAINER_PYTHON / the trainer_python setting, or clear it to use the managed venv.")
        return out
    if probe_interpreter:
        info = probe(python)
        out.update(torch=info.get("torch", ""), cuda=bool(info.get("cuda")), gpu=info.get("gpu", ""))
        if "error" in info or not info.get("trainer"):
            out.update(ready=False, detail=f"{python} cannot run the trainer: {info.get('error', 'missing package')}",
                       fix="Install the trainer's packages into it (`pip install -r cloud_backend/requirements-lock.txt`"
                           " with its torch kept), or clear the setting to use the managed venv.")
        else:
            out["detail"] = f"torch {out['torch']}, " + (f"CUDA on {out['gpu']}" if out["cuda"] else "no CUDA GPU (CPU only)")
    return out


if __name__ == "__main__":  # `python -m cloudlora.jobs.trainer_env` sets the venv up by hand
    t0 = time.monotonic()
    print(ensure())
    print(f"done in {time.monotonic() - t0:.0f} s")
