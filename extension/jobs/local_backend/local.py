"""The local backend: the trainer's container contract in a job folder on this machine, one GPU job at a time.

Job folder (like /opt/ml):
    input/config/hyperparameters.json   small string values (output_name, family, config file name)
    input/data/model/<checkpoint>       linked (local store) or downloaded (S3 store)
    input/data/dataset/                 the dataset root, linked or downloaded
    input/data/config/config.toml
    model/ output/ checkpoints/         what the trainer writes
    runner/                             runner.pid, trainer.pid, started, waiting, exit.json, stop-requested,
                                        train.log, runner.out
With a local store the folder is the store's jobs/<id>/ (beside job.json); with an S3 store it is under the data
dir. Status is read from those files only (local_status.py), so a restarted WebUI (or another process) sees the
same thing. A stopped or interrupted job resumes in the same folder: the trainer continues from checkpoints/.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ... import atomic, bootstrap, private_files, processes, system
from ...errors import UserError
from ...settings import Settings, data_dir
from . import trainer_env
# Status lives in local_status.py; these names are used through this module too.
from .local_status import (has_checkpoint,  # noqa: F401
                           pid_alive, read_tail, status)


def lock_file() -> Path:
    return data_dir() / "locks" / "local-gpu.lock"


def job_dir(store, job_id: str) -> Path:
    if getattr(store, "kind", "") == "local":
        return Path(store.root) / "jobs" / job_id
    return data_dir() / "jobs" / job_id


# Windows' classic path limit (MAX_PATH, 260 with the terminating NUL) applies unless long paths are enabled.
WINDOWS_MAX_PATH = 259


def link_or_copy(src: Path, dest: Path) -> None:
    """The store's file or folder at `dest`, without copying where the system allows: a symlink on Linux/macOS; on
    Windows (symlinks need Developer Mode or admin) a hard link for a file and a junction for a folder, neither of
    which needs a privilege. Else a copy, made under a temporary name, so a copy cut short is never reused."""
    private_files.ensure_dir(dest.parent)
    if dest.is_symlink() or (dest.exists() and (src.is_dir() or dest.stat().st_size == src.stat().st_size)):
        return
    if dest.is_file():  # an earlier copy cut short (older versions copied in place): copy again
        dest.unlink()
    if not system.WINDOWS:
        try:
            os.symlink(src, dest, target_is_directory=src.is_dir())
            return
        except OSError:
            pass
    elif src.is_dir():
        try:
            import _winapi  # Windows only

            _winapi.CreateJunction(str(src.resolve()), str(dest))
            return
        except (ImportError, AttributeError, OSError):  # not NTFS, or the suite's forced-Windows run
            pass
    else:
        try:
            os.link(src, dest)
            return
        except OSError:  # another volume, FAT/exFAT, a share: copy
            pass
    tmp = dest.with_name(dest.name + ".copying")
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    elif tmp.exists():
        tmp.unlink()
    (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp)
    os.replace(tmp, dest)


def _long_paths_enabled() -> bool:
    """Windows 10+: HKLM\\SYSTEM\\CurrentControlSet\\Control\\FileSystem LongPathsEnabled = 1."""
    try:
        import winreg

        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SYSTEM\CurrentControlSet\Control\FileSystem") as key:
            return winreg.QueryValueEx(key, "LongPathsEnabled")[0] == 1
    except (ImportError, OSError):
        return False


def check_path_lengths(jobdir: Path, dataset: Path) -> None:
    """On Windows without long paths, a path over 259 characters cannot be opened: the trainer would fail on the
    first such image with FileNotFoundError. Say so before the job starts, with the file and the fix."""
    if not system.WINDOWS or _long_paths_enabled():
        return
    dest = jobdir / "input" / "data" / "dataset"
    longest, name = 0, ""
    for path in [dest, *(dest / p.relative_to(dataset) for p in dataset.rglob("*"))]:
        if len(str(path)) > longest:
            longest, name = len(str(path)), str(path)
    if longest > WINDOWS_MAX_PATH:
        raise UserError(f"The job's folder makes a path {longest} characters long, over Windows' limit of "
                        f"{WINDOWS_MAX_PATH}: {name}",
                        "Enable long paths (an administrator runs, in PowerShell: New-ItemProperty -Path "
                        "HKLM:\\SYSTEM\\CurrentControlSet\\Control\\FileSystem -Name LongPathsEnabled -Value 1 "
                        "-PropertyType DWORD -Force), or set CLOUDLORA_STORE to a short folder such as C:\\cl, or "
                        "give the dataset shorter folder and file names.")


def prepare(jobdir: Path, store, *, model_key: str, dataset_name: str, config_text: str,
            hyperparameters: dict, progress=None, part_keys: dict[str, str] | None = None) -> None:
    """Lays out the job folder; links from a local store, downloads from an S3 store.

    part_keys: FLUX.1's separate files {"clip_l" | "t5xxl" | "ae": store key}, each into input/data/<part>/.
    The captioner (caption = ... in the TOML) is linked in by the runner, which downloads it first if need be."""
    for sub in ("input/config", "input/data/model", "input/data/config", "model", "output", "checkpoints", "runner"):
        private_files.ensure_dir(jobdir / sub)
    hp = {k: str(v) for k, v in hyperparameters.items()}
    # The trainer names the dataset in the sidecar; it can read it from a symlink, not from a hard link or junction.
    hp.setdefault("dataset_name", dataset_name)
    private_files.write_text(jobdir / "input/config/hyperparameters.json", json.dumps(hp, indent=2))
    private_files.write_text(jobdir / "input/data/config/config.toml", config_text)
    files = {model_key: jobdir / "input/data/model" / model_key.rsplit("/", 1)[-1]}
    files.update({key: jobdir / "input/data" / part / key.rsplit("/", 1)[-1] for part, key in (part_keys or {}).items()})
    dataset_dest = jobdir / "input/data/dataset"
    if getattr(store, "kind", "") == "local":
        check_path_lengths(jobdir, Path(store.uri(f"datasets/{dataset_name}")))
        for key, dest in files.items():
            src = Path(store.uri(key))
            if not src.exists():
                raise UserError(f"The model file {src} is missing from the local store.",
                                "Upload the model again (Cloud Asset Management or `cloudlora model upload`).")
            link_or_copy(src, dest)
        link_or_copy(Path(store.uri(f"datasets/{dataset_name}")), dataset_dest)
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
    cmd = bootstrap.command(sys.executable, "-m", "cloudlora.jobs.local_backend.runner", str(jobdir),
                            "--lock", str(lock_file()))
    cmd += ["--python", python] if python else ["--managed"]
    run = private_files.ensure_dir(jobdir / "runner")
    with private_files.open_file(run / "runner.out", "ab") as out:
        # Detached: its own session (POSIX) or process group outside the WebUI's console and Job object (Windows),
        # so Ctrl+C in the WebUI's window or closing it does not reach the runner and the trainer.
        proc = processes.spawn(cmd, detach=True, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               close_fds=True, cwd=str(jobdir), env=processes.child_env())
    atomic.write_text(run / "runner.pid", str(proc.pid))
    # Reap it when it ends (else it stays a zombie of this process); it does not stop with us.
    threading.Thread(target=proc.wait, name=f"cloudlora-reap-{proc.pid}", daemon=True).start()
    return proc.pid


def stop(jobdir: Path) -> str:
    """A stop request: the file runner/stop-requested, which the trainer polls after each step (it checkpoints and
    exits 143) and the queued runner polls while it waits. On POSIX a SIGTERM says it at once as well, also to a
    trainer whose runner was killed. Windows has no SIGTERM to send (os.kill there is TerminateProcess, which
    would lose the steps since the last checkpoint): the runner ends the tree itself if the request is not
    honoured in time."""
    run = jobdir / "runner"
    if (run / "exit.json").exists():
        return "already finished"
    atomic.write_text(run / "stop-requested", str(time.time()))
    trainer_pid = pid_alive(run, "trainer.pid")
    if trainer_pid:
        _signal_stop(trainer_pid)
        return "stopping the trainer (it saves a checkpoint first)"
    runner_pid = pid_alive(run, "runner.pid")
    if runner_pid:
        _signal_stop(runner_pid)
        return "removed from the queue"
    return "not running"


def _signal_stop(pid: int) -> None:
    if system.WINDOWS:
        return  # the stop file says it
    try:
        os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):  # it ended meanwhile: the stop file covers a restart too
        pass


# The files of one run of the runner; a resume clears them (train.log goes on, runner.out is kept as .prev).
RUN_FILES = ("exit.json", "stop-requested", "trainer.pid", "runner.pid", "started", "waiting", "preparing",
             "setup.json")


def resume(jobdir: Path, settings: Settings, *, prepare_inputs=None) -> str:
    """Starts a Stopped or Failed job again in its folder; the trainer continues from checkpoints/ (or step 0)."""
    run = jobdir / "runner"
    st = status(jobdir)
    if st["status"] not in ("Stopped", "Failed"):
        raise UserError(f"The local job {jobdir.name} is {st['status']}: only a Stopped or Failed job can be resumed.",
                        "Wait for it to end, or stop it first.")
    if prepare_inputs is not None and not any((jobdir / "input" / "data" / "model").glob("*")):
        prepare_inputs()  # its inputs were removed (an S3 store's job folder lives in the data dir)
    for name in RUN_FILES:
        (run / name).unlink(missing_ok=True)
    if (run / "runner.out").exists():
        os.replace(run / "runner.out", run / "runner.out.prev")
    (jobdir / "output" / "failure").unlink(missing_ok=True)
    checkpoint = has_checkpoint(jobdir)
    with private_files.open_file(run / "train.log", "a", encoding="utf-8") as log:
        log.write(f"[cloudlora] resumed at {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                  + ("continuing from the last checkpoint\n" if checkpoint else "no checkpoint, starting again\n"))
    start(jobdir, settings)
    return ("resumed: the trainer continues from its last checkpoint" if checkpoint
            else "resumed: no checkpoint was saved, so it starts again from step 0")


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
