"""The detached local runner: `python -m cloudlora.jobs.local_backend.runner JOBDIR --lock FILE [--python PY | --managed]`.

Started in its own session by local.py, so it outlives the WebUI. It waits for the one-GPU-job-at-a-time lock
(status Queued, with runner/waiting naming the job ahead), runs the trainer entrypoint on the job folder, writes its
output to runner/train.log and records the exit status in runner/exit.json. Every state is a file, so any process
can read the status later.

The trainer never outlives its runner unnoticed. On Linux and macOS it inherits the GPU lock (so no second job
starts while it lives, whatever happened to the runner); on Linux it gets SIGTERM when the runner dies (a
parent-death signal), and on macOS it watches its parent pid (CLOUDLORA_RUNNER_PID), so a `kill -9` of the runner
makes it checkpoint and exit like a Stop; the job can then be resumed. On Windows a lock is not inherited and
there is no such signal: the runner puts itself in a kill-on-close Job object first, so its trainer ends with it.

Stop is a request (runner/stop-requested) that the trainer honours after its current step; only when it has not
ended STOP_GRACE_S seconds later does the runner end the trainer's process tree.
Stdlib, psutil and filelock only (plus trainer_env for the managed venv).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cloudlora import atomic, bootstrap, locks, private_files, processes, system
from cloudlora.errors import UserError

# How long a trainer has to honour a stop request (finish its step, write the checkpoint) before its tree is ended.
STOP_GRACE_S = float(os.environ.get("CLOUDLORA_STOP_GRACE_S") or 300)

_stop = False
_child: subprocess.Popen | None = None


def _on_term(signum, frame):  # noqa: ARG001 - POSIX only in practice: Windows delivers no SIGTERM to a process
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
    if not system.LINUX:
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


def _wait(child: subprocess.Popen, stop_asked, grace: float | None = None) -> tuple[int, float | None]:
    """Waits for the trainer. Once a stop is asked it has `grace` seconds to checkpoint and exit by itself; then
    its process tree is ended. (exit code, seconds waited before ending it or None)."""
    grace = STOP_GRACE_S if grace is None else grace
    asked_at = None
    while True:
        try:
            return child.wait(timeout=0.5), None
        except subprocess.TimeoutExpired:
            pass
        if asked_at is None and stop_asked():
            asked_at = time.monotonic()
        if asked_at is not None and time.monotonic() - asked_at > grace:
            code = processes.kill_tree(child.pid, timeout=5.0)
            child.wait()
            return (child.returncode if code is None else code), round(time.monotonic() - asked_at, 1)


def main(argv: list[str] | None = None) -> int:
    global _child
    ap = argparse.ArgumentParser(prog="cloudlora.jobs.local_backend.runner")
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
    if hasattr(signal, "SIGHUP"):  # POSIX: the WebUI's terminal closing must not end it (Windows has no SIGHUP)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    processes.children_die_with_me()  # Windows: the trainer and pip end with this runner (a no-op elsewhere)

    def say(line: str) -> None:
        log.write(f"[cloudlora] {line}\n")

    def stop_asked() -> bool:
        return _stop or (run / "stop-requested").exists()

    def finish(code: int | None, note: str = "", forced: float | None = None) -> int:
        stopped = stop_asked()
        info = {"code": code, "stopped": stopped, "ended": time.time(), "note": note}
        if forced is not None:
            info["forced"] = forced
        _write_json(run / "exit.json", info)
        (run / "waiting").unlink(missing_ok=True)
        # No exit code means no trainer ran (stopped while queued): say that, not "exit None".
        say((f"finished: exit {code}" if code is not None else "finished: the trainer never started")
            + (" (stopped)" if stopped else "") + (f": {note}" if note else ""))
        return 0

    try:
        python = args.python
        if args.managed:
            python = _set_up_trainer(run, log, say)
        _stage_captioner(jobdir, run, say)
        private_files.ensure_dir(Path(args.lock).parent)
        gpu = locks.Lock(args.lock)
        ahead = None
        while True:
            if stop_asked():
                (run / "waiting").unlink(missing_ok=True)
                return finish(None, "stopped while queued")
            if gpu.try_acquire():
                break
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
        # UTF-8 output (Windows would write the ANSI code page into the UTF-8 log); the parent pid to watch where
        # no parent-death signal exists.
        env = processes.child_env(dict(os.environ, PYTHONUNBUFFERED="1", CLOUDLORA_RUNNER_PID=str(os.getpid())))
        if not (run / "started").exists():  # a managed job's clock started with its setup
            atomic.write_text(run / "started", str(time.time()))
        log.flush()
        popen = dict(stdout=log, stderr=subprocess.STDOUT, cwd=str(jobdir), env=env, stdin=subprocess.DEVNULL,
                     **processes.popen_kwargs())
        if not system.WINDOWS:  # Windows has neither pass_fds nor preexec_fn: the Job object ties them there
            popen["preexec_fn"] = _die_with_parent()
            if gpu.fd is not None:
                # The trainer holds the lock too (an inherited flock descriptor): while it lives, no other job gets
                # the GPU.
                popen["pass_fds"] = (gpu.fd,)
        _child = subprocess.Popen(cmd, **popen)
        atomic.write_text(run / "trainer.pid", str(_child.pid))
        if _stop and not system.WINDOWS:  # a stop that came between the lock and the start
            _child.send_signal(signal.SIGTERM)
        code, forced = _wait(_child, stop_asked)
        return finish(code, forced=forced)
    except Exception as err:  # recorded, so the status says Failed with the reason instead of "orphan"
        (jobdir / "output").mkdir(parents=True, exist_ok=True)
        failure = jobdir / "output" / "failure"
        if not failure.exists():
            reason = getattr(err, "reason", None)
            if reason:
                text = f"Setting up the trainer environment failed: {reason}" + (f"\nFix: {err.fix}" if err.fix else "")
            elif isinstance(err, UserError):  # e.g. the captioner's download: its words and fix
                text = err.message + (f"\nFix: {err.fix}" if err.fix else "")
            else:
                text = f"The local runner failed: {err}"
            failure.write_text(text, encoding="utf-8")
        return finish(-1, str(err))
    finally:
        log.flush()


def _set_up_trainer(run: Path, log, say) -> str:
    """The managed trainer venv (jobs/trainer_env), with its progress in runner/preparing (JSON, for the status)
    and its duration in runner/setup.json (for "Where the time went"). The job's clock starts here."""
    from cloudlora.jobs.local_backend import trainer_env

    started = time.time()
    atomic.write_text(run / "started", str(started))
    if trainer_env.is_ready():
        return trainer_env.ensure(log=lambda s: log.write(s + "\n"))
    atomic.write_text(run / "preparing", json.dumps({"step": "Setting up the trainer environment",
                                                     "started": started}))
    python = trainer_env.ensure(log=lambda s: log.write(s + "\n"),
                                progress=lambda state: atomic.write_text(run / "preparing", json.dumps(state)))
    seconds = time.time() - started
    atomic.write_text(run / "setup.json", json.dumps({"seconds": round(seconds, 1)}))
    say(f"trainer environment ready after {seconds:.1f} s")
    (run / "preparing").unlink(missing_ok=True)
    return python


def _stage_captioner(jobdir: Path, run: Path, say) -> None:
    """A job whose TOML sets caption: the captioner, downloaded once (its bytes in runner/preparing, which the
    status shows), linked as input/data/captioner/ before the job waits for the GPU."""
    from cloudlora.jobs import job_captions
    from cloudlora.jobs.local_backend import local

    try:
        kind = job_captions.wanted((jobdir / "input/data/config/config.toml").read_text(encoding="utf-8"))
    except OSError:
        return
    channel = jobdir / "input" / "data" / "captioner"
    if not kind or channel.exists():
        return
    step = f"Getting the captioner ({kind})"

    def progress(p) -> None:
        atomic.write_text(run / "preparing", json.dumps({"step": step, "package": p.item or kind, "done": p.done,
                                                         "total": p.total, "rate": p.rate,
                                                         "seconds_left": p.eta}))

    atomic.write_text(run / "preparing", json.dumps({"step": step}))
    try:
        folder = job_captions.prepare(kind, say, progress=progress)
    finally:
        (run / "preparing").unlink(missing_ok=True)
    local.link_or_copy(folder, channel)
    say(f"captioner {kind} ready ({folder})")


if __name__ == "__main__":
    sys.exit(main())
