"""The detached local runner: `python -m cloudlora.jobs.runner JOBDIR --lock FILE [--python PY | --managed]`.

Started in its own session by local.py, so it outlives the WebUI. It waits for the one-GPU-job-at-a-time lock
(status Queued, with runner/waiting naming the job ahead), runs the trainer entrypoint on the job folder, writes its
output to runner/train.log and records the exit status in runner/exit.json. Every state is a file, so any process
can read the status later.

The trainer never outlives its runner unnoticed: it inherits the GPU lock (so no second job starts while it lives,
whatever happened to the runner), and on Linux it gets SIGTERM when the runner dies (a parent-death signal), so a
`kill -9` of the runner makes it checkpoint and exit like a Stop; the job can then be resumed.
Stdlib only (plus trainer_env for the managed venv).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cloudlora import atomic, bootstrap, private_files

_stop = False
_child: subprocess.Popen | None = None


def _on_term(signum, frame):  # noqa: ARG001
    global _stop
    _stop = True
    if _child is not None and _child.poll() is None:
        _child.send_signal(signal.SIGTERM)  # the trainer checkpoints, then exits


def _write_json(path: Path, data: dict) -> None:
    atomic.write_text(path, json.dumps(data))


def holder_file(lock: str | Path) -> Path:
    """Beside the GPU lock: which job holds it (written by the holder once it has the lock)."""
    return Path(str(lock) + ".holder")


def _die_with_parent():
    """A preexec_fn (Linux): the child gets SIGTERM when this runner dies, even by SIGKILL. None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    PR_SET_PDEATHSIG = 1

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the runner died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def main(argv: list[str] | None = None) -> int:
    global _child
    ap = argparse.ArgumentParser(prog="cloudlora.jobs.runner")
    ap.add_argument("jobdir")
    ap.add_argument("--lock", required=True)
    ap.add_argument("--python", default="")
    ap.add_argument("--managed", action="store_true")
    args = ap.parse_args(argv)
    # Everything this process and the trainer write (logs, samples, the LoRA, checkpoints) lands in the private
    # job folder: keep it private too. The pulled copy in the Lora folder is written by the WebUI, with its umask.
    os.umask(private_files.CHILD_UMASK)
    jobdir = Path(args.jobdir)
    run = jobdir / "runner"
    run.mkdir(parents=True, exist_ok=True)
    log = open(run / "train.log", "a", buffering=1, encoding="utf-8")
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def say(line: str) -> None:
        log.write(f"[cloudlora] {line}\n")

    def finish(code: int | None, note: str = "") -> int:
        stopped = _stop or (run / "stop-requested").exists()
        _write_json(run / "exit.json", {"code": code, "stopped": stopped, "ended": time.time(), "note": note})
        (run / "waiting").unlink(missing_ok=True)
        say(f"finished: exit {code}" + (" (stopped)" if stopped else "") + (f": {note}" if note else ""))
        return 0

    try:
        python = args.python
        if args.managed:
            (run / "preparing").write_text(str(time.time()), encoding="utf-8")
            from cloudlora.jobs import trainer_env

            python = trainer_env.ensure(log=lambda s: log.write(s + "\n"))
            (run / "preparing").unlink(missing_ok=True)
        private_files.ensure_dir(Path(args.lock).parent)
        lock_fd = private_files.open_fd(args.lock, os.O_RDWR)
        ahead = None
        while True:
            if _stop or (run / "stop-requested").exists():
                (run / "waiting").unlink(missing_ok=True)
                return finish(None, "stopped while queued")
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # Queued, and the status says behind which job (the holder writes its id once it has the lock).
                try:
                    holder = holder_file(args.lock).read_text(encoding="utf-8").strip()
                except OSError:
                    holder = ""
                if holder != ahead:
                    ahead = holder
                    atomic.write_text(run / "waiting", holder)
                    say(f"waiting for the GPU: job {holder or '(unknown)'} is using it (one local job at a time)")
                time.sleep(0.5)
        (run / "waiting").unlink(missing_ok=True)
        atomic.write_text(holder_file(args.lock), jobdir.name)
        # The trainer environment needs no install of this package: the bootstrap maps it from the extension folder.
        cmd = bootstrap.command(python, "-m", "cloudlora_backend.trainer", "--root", str(jobdir))
        say("$ " + " ".join(cmd))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        atomic.write_text(run / "started", str(time.time()))
        # The trainer holds the lock too (an inherited descriptor): while it lives, no other job gets the GPU.
        _child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(jobdir), env=env,
                                  stdin=subprocess.DEVNULL, pass_fds=(lock_fd,), preexec_fn=_die_with_parent())
        atomic.write_text(run / "trainer.pid", str(_child.pid))
        if _stop:  # a stop that came between the lock and the start
            _child.send_signal(signal.SIGTERM)
        code = _child.wait()
        return finish(code)
    except Exception as err:  # recorded, so the status says Failed with the reason instead of "orphan"
        (jobdir / "output").mkdir(parents=True, exist_ok=True)
        failure = jobdir / "output" / "failure"
        if not failure.exists():
            failure.write_text(f"The local runner failed: {err}", encoding="utf-8")
        return finish(-1, str(err))
    finally:
        log.flush()


if __name__ == "__main__":
    sys.exit(main())
