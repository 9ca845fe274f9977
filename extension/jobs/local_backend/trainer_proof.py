"""Whether the trainer environment can really train, proven by one real step and remembered per environment.

"torch imports" is not proof: a transformers/peft mismatch let every text-encoder job fail while the environment
looked fine. So the doctor runs `cloudlora_backend.trainer.selftest` in the trainer's interpreter (one LoRA step on
the tiny model, a few seconds on an idle machine) and keeps the answer keyed by what could change it: the
interpreter, the packages installed in it (their dist-info names carry the versions) and the trainer's own code.
A pip install, a lock bump or a trainer change makes the next doctor run prove it again.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

from ... import bootstrap, processes

TRAINER_SRC = Path(__file__).resolve().parents[3] / "cloud_backend" / "trainer"
TIMEOUT_S = 900  # the first step on a busy CPU; an idle machine takes seconds


def _site_dirs(python: str) -> list[str]:
    code = "import json,sysconfig;p=sysconfig.get_paths();print(json.dumps(sorted({p['purelib'],p['platlib']})))"
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60,
                             encoding="utf-8", errors="replace", env=processes.child_env(),
                             **processes.popen_kwargs())
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return []


def environment_key(python: str) -> str:
    """Changes when the interpreter, any installed package version or the trainer's code changes."""
    h = hashlib.sha256(str(Path(python).resolve()).encode())
    for site in _site_dirs(python):
        try:
            h.update("\n".join(sorted(p.name for p in Path(site).iterdir() if p.name.endswith(".dist-info"))).encode())
        except OSError:
            continue
    for src in sorted(TRAINER_SRC.glob("*.py")):
        h.update(src.name.encode() + src.read_bytes())
    return h.hexdigest()


def _cache_file() -> Path:
    from ...settings import data_dir

    return data_dir() / "trainer-proof.json"


def _cached(key: str) -> dict | None:
    try:
        entry = json.loads(_cache_file().read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) else None


def _remember(key: str, result: dict) -> None:
    path = _cache_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data = {k: v for k, v in data.items() if k != key and isinstance(v, dict)}
    data = dict(list(data.items())[-7:])  # a few environments, not a growing file
    data[key] = result
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    except OSError:
        pass  # no cache: the next doctor run proves it again


def prove(python: str, *, use_cache: bool = True, timeout: float = TIMEOUT_S) -> dict:
    """{"ok", "seconds", "device", "error"?, "cached", "checked"}: one real training step in `python`."""
    key = environment_key(python)
    if use_cache:
        hit = _cached(key)
        if hit is not None and hit.get("ok"):  # a failure is tried again: the user may have just fixed it
            return {**hit, "cached": True}
    try:
        run = subprocess.run(bootstrap.command(python, "-m", "cloudlora_backend.trainer.selftest"),
                             capture_output=True, text=True, timeout=timeout, encoding="utf-8", errors="replace",
                             env=processes.child_env(), **processes.popen_kwargs())
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        result = json.loads(lines[-1]) if lines else \
            {"ok": False, "error": ((run.stderr or run.stdout).strip().splitlines() or ["no output"])[-1][:400]}
    except subprocess.TimeoutExpired:
        result = {"ok": False, "error": f"one training step took over {int(timeout)} s"}
    except (OSError, ValueError) as err:
        result = {"ok": False, "error": str(err)[:400]}
    result["checked"] = time.strftime("%Y-%m-%d %H:%M")
    _remember(key, result)
    return {**result, "cached": False}
