"""The local backend: the trainer's container contract in a job folder on this machine, one GPU job at a time.

Job folder (like /opt/ml):
    input/config/hyperparameters.json   small string values (output_name, family, config file name)
    input/data/model/<checkpoint>       linked (local store) or downloaded (S3 store)
    input/data/dataset/                 the dataset root, linked or downloaded
    input/data/config/config.toml
    model/ output/ checkpoints/         what the trainer writes
    runner/                             runner.pid, trainer.pid, started, exit.json, stop-requested, train.log
With a local store the folder is the store's jobs/<id>/ (beside job.json); with an S3 store it is under the data
dir. Status is read from those files only, so a restarted WebUI (or another process) sees the same thing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..errors import UserError
from ..settings import Settings, data_dir
from .. import bootstrap, private_files
from . import trainer_env

STEP_RE = re.compile(r"step=(\d+)/(\d+)(?:\s+loss=([0-9.eE+-]+|nan|inf))?")


def lock_file() -> Path:
    return data_dir() / "locks" / "local-gpu.lock"


def job_dir(store, job_id: str) -> Path:
    if getattr(store, "kind", "") == "local":
        return Path(store.root) / "jobs" / job_id
    return data_dir() / "jobs" / job_id


def _link_or_copy(src: Path, dest: Path) -> None:
    private_files.ensure_dir(dest.parent)
    if dest.is_symlink() or dest.exists():
        return
    try:
        os.symlink(src, dest, target_is_directory=src.is_dir())
    except OSError:  # no symlinks (Windows without developer mode, some mounts): copy
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest)


def prepare(jobdir: Path, store, *, model_key: str, dataset_name: str, config_text: str,
            hyperparameters: dict, progress=None, part_keys: dict[str, str] | None = None) -> None:
    """Lays out the job folder; links from a local store, downloads from an S3 store.

    part_keys: FLUX.1's separate files {"clip_l" | "t5xxl" | "ae": store key}, each into input/data/<part>/."""
    for sub in ("input/config", "input/data/model", "input/data/config", "model", "output", "checkpoints", "runner"):
        private_files.ensure_dir(jobdir / sub)
    hp = {k: str(v) for k, v in hyperparameters.items()}
    private_files.write_text(jobdir / "input/config/hyperparameters.json", json.dumps(hp, indent=2))
    private_files.write_text(jobdir / "input/data/config/config.toml", config_text)
    files = {model_key: jobdir / "input/data/model" / model_key.rsplit("/", 1)[-1]}
    files.update({key: jobdir / "input/data" / part / key.rsplit("/", 1)[-1] for part, key in (part_keys or {}).items()})
    dataset_dest = jobdir / "input/data/dataset"
    if getattr(store, "kind", "") == "local":
        for key, dest in files.items():
            src = Path(store.uri(key))
            if not src.exists():
                raise UserError(f"The model file {src} is missing from the local store.",
                                "Upload the model again (Cloud Asset Management or `cloudlora model upload`).")
            _link_or_copy(src, dest)
        _link_or_copy(Path(store.uri(f"datasets/{dataset_name}")), dataset_dest)
        return
    # An S3 store: the trainer reads local files, so fetch them (the dataset is small, the model is big).
    for key, dest in files.items():
        store.download(key, dest, progress=progress)
    prefix = f"datasets/{dataset_name}/"
    for info in store.list(prefix):
        rel = info.key[len(prefix):]
        if rel and rel != "manifest.json":
            store.download(info.key, dataset_dest / rel)


def start(jobdir: Path, settings: Settings) -> int:
    """Starts the detached runner; returns its pid. It survives the WebUI (its own session)."""
    python = trainer_env.configured_python(settings)
    # Through the bootstrap: in a bare clone (Install from URL) the WebUI's Python has no `cloudlora` package.
    cmd = bootstrap.command(sys.executable, "-m", "cloudlora.jobs.runner", str(jobdir), "--lock", str(lock_file()))
    cmd += ["--python", python] if python else ["--managed"]
    run = private_files.ensure_dir(jobdir / "runner")
    with private_files.open_file(run / "runner.out", "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True, cwd=str(jobdir))
    private_files.write_text(run / "runner.pid", str(proc.pid))
    # Reap it when it ends (else it stays a zombie of this process); it does not stop with us.
    threading.Thread(target=proc.wait, name=f"cloudlora-reap-{proc.pid}", daemon=True).start()
    return proc.pid


def _boot_time() -> float:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _alive(pid: int, must_contain: str = "", pidfile: Path | None = None) -> bool:
    """Is `pid` still the process we started? A zombie is not; a pid reused by a later process is not.

    With a pid file, "ours" means the process started no later than the file was written (a reused pid starts
    after); the command line is not used then, because right after the fork it is still the parent's.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat_path = Path(f"/proc/{pid}/stat")
    if not stat_path.exists():
        return True  # no /proc (macOS): trust kill(0)
    try:
        fields = stat_path.read_text().rsplit(")", 1)[-1].split()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if fields[0] == "Z":  # a zombie our own process has not reaped yet
        return False
    if pidfile is not None:
        try:
            written = pidfile.stat().st_mtime
            started = _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return True
        return started <= written + 2.0
    if must_contain and raw and must_contain.encode() not in raw:
        return False  # the pid was reused by another program
    return True


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _read_float(path: Path) -> float:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return 0.0


def read_tail(path: Path, max_bytes: int = 64 << 10) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def last_step(log_text: str) -> tuple[int, int, float | None]:
    matches = list(STEP_RE.finditer(log_text))
    if not matches:
        return 0, 0, None
    m = matches[-1]
    loss = float(m.group(3)) if m.group(3) else None
    return int(m.group(1)), int(m.group(2)), loss


def status(jobdir: Path) -> dict:
    """{"status", "secondary_status", "step", "total_steps", "started", "ended", "failure", "exit_code"}."""
    run = jobdir / "runner"
    out = {"status": "Created", "secondary_status": "", "step": 0, "total_steps": 0, "started": 0.0,
           "ended": 0.0, "failure": "", "exit_code": None}
    tail = read_tail(run / "train.log")
    out["step"], out["total_steps"], _ = last_step(tail)
    out["started"] = _read_float(run / "started")
    stop_requested = (run / "stop-requested").exists()
    exit_file = run / "exit.json"
    if exit_file.exists():
        try:
            info = json.loads(exit_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {"code": -1}
        out["ended"] = float(info.get("ended") or 0)
        out["exit_code"] = info.get("code")
        if info.get("code") == 0:
            out["status"] = "Completed"
        elif info.get("stopped") or stop_requested:
            out["status"] = "Stopped"
            out["secondary_status"] = "Stopped by user (checkpoint kept)" if out["step"] else "Stopped by user"
        else:
            out["status"] = "Failed"
            out["failure"] = failure_text(jobdir, tail, info)
        return out
    runner_pid = _read_int(run / "runner.pid")
    if runner_pid is None:
        return out
    if not _alive(runner_pid, pidfile=run / "runner.pid"):
        if exit_file.exists():  # it finished between the two looks
            return status(jobdir)
        out["status"] = "Failed"
        crash = _runner_crash(run)
        if crash:  # it died on its own before it could record anything (an import error, say): show its words
            out["secondary_status"] = "Runner failed"
            out["failure"] = (f"The local runner stopped before it could start the trainer:\n{crash}\n"
                              "This is a bug in Cloud LoRA Trainer or a broken install; the full output is in "
                              f"{run / 'runner.out'}.")
            return out
        out["secondary_status"] = "Orphaned"
        out["failure"] = (f"The local runner (pid {runner_pid}) is gone without recording an exit status: the machine "
                          "restarted or the process was killed. Create the job again.")
        return out
    trainer_pid = _read_int(run / "trainer.pid")
    if stop_requested:
        out["status"] = "Stopping"
    elif (run / "preparing").exists():
        out["status"], out["secondary_status"] = "Starting", "Setting up the trainer environment"
    elif trainer_pid is None:
        out["status"], out["secondary_status"] = "Queued", "Waiting for the GPU (another local job is running)"
    elif out["step"] == 0:
        out["status"], out["secondary_status"] = "Starting", "Loading the model and caching latents"
    else:
        out["status"], out["secondary_status"] = "Training", f"step {out['step']}/{out['total_steps']}"
    return out


def _runner_crash(run: Path) -> str:
    """The last lines of the runner's own output (runner.out), which only a crash of the runner itself writes."""
    lines = [ln for ln in read_tail(run / "runner.out", 16 << 10).splitlines() if ln.strip()]
    return "\n".join(lines[-6:])


def failure_text(jobdir: Path, tail: str, info: dict) -> str:
    failure = jobdir / "output" / "failure"
    if failure.exists():
        try:
            return failure.read_text(encoding="utf-8", errors="replace").strip()[:4000]
        except OSError:
            pass
    lines = [ln for ln in tail.splitlines() if ln.strip()]
    detail = "\n".join(lines[-15:])
    code = info.get("code")
    return f"The trainer exited with code {code}." + (f"\n{detail}" if detail else "")


def stop(jobdir: Path) -> str:
    """SIGTERM to the trainer (it checkpoints) or, while queued, to the runner. Returns what was done."""
    run = jobdir / "runner"
    if (run / "exit.json").exists():
        return "already finished"
    private_files.write_text(run / "stop-requested", str(time.time()))
    trainer_pid = _read_int(run / "trainer.pid")
    if trainer_pid and _alive(trainer_pid, pidfile=run / "trainer.pid"):
        os.kill(trainer_pid, signal.SIGTERM)
        return "stopping the trainer (it saves a checkpoint first)"
    runner_pid = _read_int(run / "runner.pid")
    if runner_pid and _alive(runner_pid, pidfile=run / "runner.pid"):
        os.kill(runner_pid, signal.SIGTERM)
        return "removed from the queue"
    return "not running"


def log_path(jobdir: Path) -> Path:
    return jobdir / "runner" / "train.log"


def samples(jobdir: Path) -> list[Path]:
    found = []
    for folder in (jobdir / "model" / "samples", jobdir / "output" / "samples", jobdir / "samples"):
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    return found


def tensorboard_dir(jobdir: Path) -> Path:
    return jobdir / "output" / "tensorboard"


def model_dir(jobdir: Path) -> Path:
    return jobdir / "model"


def delete(jobdir: Path) -> None:
    if jobdir.exists():
        shutil.rmtree(jobdir, ignore_errors=True)
