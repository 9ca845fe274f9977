"""The doctor: checks everything training needs and says, for each failure, what is wrong and how to fix it.

`run_checks(settings)` is what `cloudlora doctor`, GET /cloudlora/v1/doctor and "Check connection" call. Each check is
a small function returning one or more Check lines; a check that cannot run (its prerequisite failed or the thing is
not configured) says "skip" with the reason.

What counts as a problem follows the chosen backend: only what that backend needs can fail the doctor (exit 1).
With the local backend and the local store, AWS is information: no credentials is a "skip" line saying it is not
needed (and how to add them for SageMaker), other AWS findings are warnings. With SageMaker, the local trainer
environment is information the same way. The trainer environment is proven by one real training step
(cloudlora.jobs.local_backend.trainer_proof, cached per environment), not by importing torch.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterable

from . import processes, system
from .check_lines import STATUSES, Check, CheckContext, short_error
from .errors import UserError
from .settings import Settings

# ---------------------------------------------------------------- this machine

_PACKAGES = ["boto3", "botocore", "tomlkit", "platformdirs", "gradio", "fastapi", "pydantic"]
_MIN_BOTO3 = (1, 34)


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def check_python(ctx: CheckContext) -> list[Check]:
    py = platform.python_version()
    checks = [Check("python", "ok" if sys.version_info >= (3, 10) else "problem", f"Python {py} ({sys.executable})",
                    "" if sys.version_info >= (3, 10) else "Use Python 3.10 or newer (A1111 recommends 3.10).")]
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    missing = [n for n in ("boto3", "botocore", "tomlkit", "platformdirs") if not versions[n]]
    detail = ", ".join(f"{n} {v}" for n, v in versions.items() if v)
    if missing:
        checks.append(Check("packages", "problem", f"missing: {', '.join(missing)}; found {detail}",
                            f"Install them into this Python: `{sys.executable} -m pip install {' '.join(missing)}` "
                            "(the WebUI's install.py does this on restart)."))
    elif _version_tuple(versions["boto3"]) < _MIN_BOTO3:
        checks.append(Check("packages", "problem", f"boto3 {versions['boto3']} is too old (need >= 1.34); {detail}",
                            f"`{sys.executable} -m pip install -U 'boto3>=1.34,<2'`"))
    else:
        checks.append(Check("packages", "ok", detail))
    return checks


def check_torch(ctx: CheckContext) -> Check:
    """torch in THIS interpreter (the WebUI's): informative only, the trainer runs in its own environment."""
    if "torch" not in sys.modules and importlib.util.find_spec("torch") is None:
        return Check("torch", "skip", "torch is not installed in this Python; not needed here (the local backend "
                                      "trains in its own environment)")
    try:
        torch = importlib.import_module("torch")
    except Exception as err:  # noqa: BLE001 - a broken torch install must not crash the doctor
        return Check("torch", "warn", f"torch is installed but does not import: {err}")
    parts = [f"torch {torch.__version__}"]
    if torch.cuda.is_available():
        parts.append(f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        parts.append("Apple MPS available")
    else:
        parts.append("no CUDA or MPS device")
    return Check("torch", "ok", ", ".join(parts))


def _nvidia_smi() -> list[tuple[str, int, int]] | None:
    """[(name, total MiB, free MiB)] per GPU from nvidia-smi, or None when there is none."""
    exe = system.find_nvidia_smi()
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True, encoding="utf-8",
                             errors="replace", **processes.popen_kwargs()).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            gpus.append((parts[0], int(parts[1]), int(parts[2])))
    return gpus or None


# Rough VRAM needs for LoRA training with the default presets (cached latents, gradient checkpointing on SDXL).
_VRAM_SD15_MIB = 6 * 1024
_VRAM_SDXL_MIB = 12 * 1024


def check_gpu(ctx: CheckContext) -> Check:
    gpus = _nvidia_smi()
    if gpus is None and "torch" in sys.modules:
        torch = sys.modules["torch"]
        try:
            if torch.cuda.is_available():
                free, total = torch.cuda.mem_get_info(0)
                gpus = [(torch.cuda.get_device_name(0), total // 2**20, free // 2**20)]
            elif torch.backends.mps.is_available():
                return Check("local gpu", "ok", "Apple MPS (unified memory) for the local backend")
        except Exception:  # noqa: BLE001 - informative only
            gpus = None
    if not gpus and ctx.trainer.get("cuda"):
        return Check("local gpu", "ok", f"{ctx.trainer.get('gpu') or 'a CUDA GPU'} (seen by the trainer's torch)")
    if not gpus:
        return Check("local gpu", "warn", "no NVIDIA GPU found: local training would run on the CPU (fine for the "
                                          "tiny test models, far too slow for real ones)",
                     "Train on SageMaker (run `cloudlora setup`), or use a machine with an NVIDIA GPU.")
    name, total, free = max(gpus, key=lambda g: g[2])
    detail = f"{name}: {free / 1024:.1f} GiB free of {total / 1024:.1f} GiB"
    if free < _VRAM_SD15_MIB:
        return Check("local gpu", "warn", f"{detail}; SD 1.5 LoRA training needs about 6 GiB free",
                     "Close other GPU programs (the WebUI's loaded model uses VRAM too) or train on SageMaker.")
    if free < _VRAM_SDXL_MIB:
        return Check("local gpu", "ok", f"{detail}; enough for SD 1.5, SDXL needs about 12 GiB free")
    return Check("local gpu", "ok", detail)


def check_trainer_env(ctx: CheckContext) -> Check:
    """The local backend's own environment (owned by cloudlora.jobs.local_backend.trainer_env)."""
    try:
        trainer_env = importlib.import_module("cloudlora.jobs.local_backend.trainer_env")
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("cloudlora.jobs"):
            return Check("trainer environment", "skip", "the local backend is not part of this version")
        raise
    # Predicting the setup (two pip dry runs) is for the backend that will set it up: Local.
    status = trainer_env.status(ctx.settings, predict_setup=ctx.settings.effective_backend != "sagemaker")
    ctx.trainer = status if isinstance(status, dict) else {}
    check = _as_check("trainer environment", status)
    if check.status == "ok" and isinstance(status, dict) and status.get("interpreter"):
        check = _proven(check, status["interpreter"])
    return check


def _proven(check: Check, python: str) -> Check:
    """An environment that imports is not yet one that trains: one real step decides (cached per environment)."""
    from .jobs.local_backend import trainer_proof

    proof = trainer_proof.prove(python)
    if proof.get("ok"):
        when = f"checked {proof.get('checked', '')}, cached" if proof.get("cached") else "just now"
        return Check(check.name, "ok", f"{check.detail}; a training step ran on {proof.get('device', '?')} in "
                                       f"{proof.get('seconds', '?')} s ({when})")
    return Check(check.name, "problem", f"{python} cannot train: one LoRA step failed with {proof.get('error')}",
                 "If this environment was changed by hand, rebuild it from the lock (delete the managed venv; the "
                 "next job recreates it), or point CLOUDLORA_TRAINER_PYTHON at one installed from "
                 "cloud_backend/requirements-lock.txt. If it is the lock itself, report it with this line.")


def _as_check(name: str, status) -> Check:
    """Adapts trainer_env.status() ({interpreter, managed, ready, torch, cuda, gpu, detail, fix}) to a Check.

    A managed venv that does not exist yet is a warn, not a problem: the first local job creates it."""
    if isinstance(status, Check):
        return status
    get = status.get if isinstance(status, dict) else (lambda k, d=None: getattr(status, k, d))
    state = get("status")
    if state not in STATUSES:
        if get("ready"):
            state = "ok"
        elif get("managed") and get("interpreter") and not Path(str(get("interpreter"))).exists():
            state = "warn"
        else:
            state = "problem"
    detail = get("detail") or (f"{get('interpreter')}" if get("interpreter") else str(status))
    if state == "ok" and get("interpreter") and str(get("interpreter")) not in detail:
        detail = f"{get('interpreter')}: {detail}"
    return Check(name, state, str(detail), str(get("fix") or ""))


def check_backend(ctx: CheckContext) -> Check:
    s = ctx.settings
    backend = s.effective_backend
    if s.backend:
        why = "set"
    else:
        why = "bucket and role configured" if backend == "sagemaker" else "no AWS stack configured"
    return Check("backend", "ok", f"{backend} ({why})")


# ---------------------------------------------------------------- running them

_LOCAL = [check_backend, check_python, check_torch, check_trainer_env, check_gpu]
_AWS = ["check_region", "check_bucket", "check_role", "check_image", "check_quotas"]  # in cloudlora.aws.checks


def _run(fn, ctx: CheckContext) -> list[Check]:
    from .aws.session import translate

    name = fn.__name__.removeprefix("check_").replace("_", " ")
    try:
        out = fn(ctx)
    except UserError as err:
        return [Check(name, "problem", err.message, err.fix or "")]
    except Exception as err:  # noqa: BLE001 - one failing check must not hide the others
        user_err = translate(err, settings=ctx.settings)
        if user_err is not None:
            return [Check(name, "problem", user_err.message, user_err.fix or "")]
        return [Check(name, "problem", f"the check failed unexpectedly: {type(err).__name__}: {short_error(err)}",
                      "Please report this with the output of `cloudlora doctor --json`.")]
    return list(out) if isinstance(out, Iterable) and not isinstance(out, Check) else [out]


def needs_aws(settings: Settings) -> bool:
    """SageMaker trains there; an S3 store (a bucket) is AWS too, even for local training."""
    return settings.effective_backend == "sagemaker" or bool(settings.bucket)


def _as_information(checks: list[Check], why: str) -> list[Check]:
    """Lines of something the chosen backend does not need: never a problem (exit 0), still said."""
    out = []
    for c in checks:
        if c.status == "problem" and c.name == "aws credentials":
            c = Check(c.name, "skip", f"{c.detail} Not needed: {why}. To train on SageMaker: {c.fix}")
        elif c.status == "problem":
            c = Check(c.name, "warn", f"{c.detail} (not needed: {why})", c.fix)
        out.append(c)
    return out


def run_checks(settings: Settings, *, instance_types: list[str] | None = None) -> list[Check]:
    """Every check, in order: this machine and the local backend first, then AWS. Only what the chosen backend
    needs can be a problem (see the module docstring)."""
    checks = _all_checks(settings, instance_types)
    if not needs_aws(settings):
        local_names = {"backend", "python", "packages", "torch", "trainer environment", "local gpu"}
        aws = [c for c in checks if c.name not in local_names]
        checks = [c for c in checks if c.name in local_names] + \
            _as_information(aws, "the backend is Local and the store is a local folder")
    else:
        checks = [_as_information([c], "training runs on SageMaker")[0]
                  if c.name in ("trainer environment", "local gpu") and settings.effective_backend == "sagemaker"
                  else c for c in checks]
    return checks


def _all_checks(settings: Settings, instance_types: list[str] | None) -> list[Check]:
    types = list(instance_types) if instance_types else ([settings.instance_type] if settings.instance_type else [])
    types = [t for t in types if t.startswith("ml.")]  # SageMaker instance types only (not "local")
    ctx = CheckContext(settings=settings, instance_types=types)
    checks: list[Check] = []
    for fn in _LOCAL:
        checks += _run(fn, ctx)
    from .aws import checks as aws_checks  # boto3 only now

    creds = _run(aws_checks.check_credentials, ctx)
    for c in creds:
        c.name = "aws credentials"
    checks += creds
    for name in _AWS:
        label = name.removeprefix("check_")
        if ctx.identity is None:
            checks.append(Check(label, "skip", "needs AWS credentials"))
        elif name != "check_region" and not ctx.region:
            checks.append(Check(label, "skip", "needs a region"))
        else:
            checks += _run(getattr(aws_checks, name), ctx)
    return checks


def has_problem(checks: list[Check]) -> bool:
    return any(c.status == "problem" for c in checks)
