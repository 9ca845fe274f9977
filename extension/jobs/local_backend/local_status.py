"""The truth about a local job, read from its folder's files and its processes: never a status that hides a crash,
promises what cannot happen, or names a queue that is not there.

- Queued only while the runner waits for the GPU lock, naming the job ahead (runner/waiting).
- Stopped only when a Stop was asked for and the trainer ended as a stop does (143, SIGTERM, or still queued); a
  crash after a Stop is Failed, with the crash's own words.
- A trainer stopped by a SIGTERM that was not a Stop (or whose runner was killed) is Failed · Interrupted and says how
  to resume it (Resume button, `cloudlora resume ID`, POST /jobs/ID/resume).
- A trainer that outlives its runner still shows as running (and can be stopped); one that finished its LoRA after
  its runner died is Completed, so it can be pulled.
"""
from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

from ... import processes

from ..results.steps import last_step
SIGTERM_STOP_RE = re.compile(r"stopped by SIGTERM at step (\d+)|stopped at step (\d+)")
EXIT_STOPPED = 143  # the trainer's exit code after it checkpointed on SIGTERM


def alive(pid: int, pidfile: Path | None = None) -> bool:
    """Is `pid` still the process we started? A zombie is not; a pid reused by a later process is not.

    With a pid file, "ours" means the process started no later than the file was written (a reused pid starts
    after). Never os.kill(pid, 0): on Windows that sends Ctrl+C to the console (processes.py).
    """
    started_before = None
    if pidfile is not None:
        try:
            started_before = pidfile.stat().st_mtime
        except OSError:
            pass
    return processes.alive(pid, started_before=started_before)


def read_int(path: Path) -> int | None:
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


def pid_alive(run: Path, name: str) -> int | None:
    """The pid in runner/<name> if that process is still the one we started, else None."""
    pid = read_int(run / name)
    return pid if pid and alive(pid, pidfile=run / name) else None


def has_checkpoint(jobdir: Path) -> bool:
    folder = jobdir / "checkpoints"
    try:
        return any(p.is_file() and not p.name.startswith(".") and not p.name.endswith(".tmp")
                   for p in folder.iterdir())
    except OSError:
        return False


def output_name(jobdir: Path) -> str:
    try:
        hp = json.loads((jobdir / "input/config/hyperparameters.json").read_text(encoding="utf-8"))
        return str(hp.get("output_name") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def finished_lora(jobdir: Path, tail: str) -> bool:
    """Did the trainer really finish: its last word is `done` (printed after the LoRA, sidecar and preview are
    written) and the final LoRA is there?"""
    name = output_name(jobdir)
    lines = [ln.strip() for ln in this_run(tail).splitlines() if ln.strip() and not ln.startswith("[cloudlora]")]
    return bool(name) and bool(lines) and re.match(r"^done\b", lines[-1]) is not None and \
        (jobdir / "model" / f"{name}.safetensors").is_file()


def _resume_hint(jobdir: Path) -> str:
    job_id = jobdir.name
    return (f"Resume the job to continue from its last checkpoint: the Resume button in the Trainings List, "
            f"`cloudlora resume {job_id}`, or POST /cloudlora/v1/jobs/{job_id}/resume.")


def this_run(tail: str) -> str:
    """The log since the last resume (train.log goes on across resumes)."""
    mark = tail.rfind("[cloudlora] resumed at ")
    return tail[mark:] if mark >= 0 else tail


def _stopped_step(tail: str) -> int | None:
    found = SIGTERM_STOP_RE.findall(this_run(tail))
    if not found:
        return None
    a, b = found[-1]
    return int(a or b)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


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
        return _ended(jobdir, out, tail, stop_requested)
    runner_pid = read_int(run / "runner.pid")
    if runner_pid is None:
        return out
    runner_alive = alive(runner_pid, pidfile=run / "runner.pid")
    if not runner_alive and exit_file.exists():  # it finished between the two looks
        return status(jobdir)
    trainer_alive = pid_alive(run, "trainer.pid") is not None
    if not runner_alive and not trainer_alive:
        return _orphaned(jobdir, out, tail, runner_pid, stop_requested)
    if stop_requested:
        out["status"], out["secondary_status"] = "Stopping", "Saving a checkpoint, then stopping"
    elif (run / "preparing").exists():
        out["status"], out["secondary_status"] = "Starting", _setup_text(run / "preparing")
    elif (run / "waiting").exists() and not trainer_alive:
        try:
            ahead = (run / "waiting").read_text(encoding="utf-8").strip()
        except OSError:
            ahead = ""
        out["status"] = "Queued"
        out["secondary_status"] = (f"Waiting for the GPU: job {ahead} is using it" if ahead
                                   else "Waiting for the GPU: another local job is using it")
    elif not trainer_alive:
        out["status"], out["secondary_status"] = "Starting", "Starting the trainer"
    elif out["step"] == 0:
        out["status"], out["secondary_status"] = "Starting", "Loading the model and caching latents"
    elif out["step"] >= out["total_steps"] and this_run(tail).count("step=") > 0:
        # Past the last step the trainer saves the LoRA and renders the final samples (up to a minute): not "Training"
        out["status"], out["secondary_status"] = "Finishing", "Saving the LoRA and rendering the final samples"
    else:
        out["status"], out["secondary_status"] = "Training", f"step {out['step']}/{out['total_steps']}"
    if not runner_alive:  # the trainer outlived its runner: it still holds the GPU, and Stop still reaches it
        out["secondary_status"] += " (its runner was killed; Stop still works)"
    return out


def _setup_text(path: Path) -> str:
    """What the trainer setup is doing (runner/preparing: pip_progress's state as JSON), in one line."""
    from .pip_progress import describe

    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = None
    return describe(state) if isinstance(state, dict) else "Setting up the trainer environment"


def _ended(jobdir: Path, out: dict, tail: str, stop_requested: bool) -> dict:
    run = jobdir / "runner"
    try:
        info = json.loads((run / "exit.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {"code": -1}
    code = info.get("code")
    out["ended"] = float(info.get("ended") or 0)
    out["exit_code"] = code
    checkpoint = has_checkpoint(jobdir)
    if code == 0:
        out["status"] = "Completed"
    elif stop_requested or info.get("stopped"):
        if code in (None, EXIT_STOPPED, -signal.SIGTERM):
            out["status"] = "Stopped"
            out["secondary_status"] = "Stopped by user (checkpoint kept)" if checkpoint else "Stopped by user"
        elif info.get("forced"):  # it did not honour the stop file in time, so the runner ended its process tree
            out["status"] = "Stopped"
            out["secondary_status"] = (f"Stopped by user: ended after {info['forced']:.0f} s without stopping by "
                                       "itself" + (" (the last periodic checkpoint is kept)" if checkpoint else ""))
        else:  # it crashed while stopping: say so, with the crash's own words
            out["status"], out["secondary_status"] = "Failed", "Crashed while stopping"
            out["failure"] = "The job was being stopped when the trainer failed.\n" + failure_text(jobdir, tail, info)
    elif code == EXIT_STOPPED:
        step = _stopped_step(tail)
        at = f" at step {step}" if step else ""
        out["status"], out["secondary_status"] = "Failed", "Interrupted (SIGTERM)"
        out["failure"] = (f"The trainer was stopped by a SIGTERM{at} that did not come from Stop (another program, a "
                          f"shutdown), and saved a checkpoint first. {_resume_hint(jobdir)}")
    elif isinstance(code, int) and code < 0 and not info.get("note"):  # (the runner's own failures have a note)
        out["status"], out["secondary_status"] = "Failed", f"Killed ({_signal_name(code)})"
        out["failure"] = (f"The trainer was killed by {_signal_name(code)} (the system ran out of memory, or "
                          "another program killed it). ")
        out["failure"] += _resume_hint(jobdir) if checkpoint else "It had saved no checkpoint yet."
        last = [ln for ln in tail.splitlines() if ln.strip()][-5:]
        out["failure"] += ("\nThe log's last lines:\n" + "\n".join(last)) if last else ""
    else:
        out["status"] = "Failed"
        out["failure"] = failure_text(jobdir, tail, info)
    return out


def _orphaned(jobdir: Path, out: dict, tail: str, runner_pid: int, stop_requested: bool) -> dict:
    """The runner is gone without recording an exit, and no trainer of this job runs."""
    run = jobdir / "runner"
    if finished_lora(jobdir, tail):
        out["status"], out["secondary_status"] = "Completed", "Finished after its runner was killed"
        return out
    if stop_requested and has_checkpoint(jobdir) and _stopped_step(tail) is not None:  # Stop reached the trainer
        out["status"], out["secondary_status"] = "Stopped", "Stopped by user (checkpoint kept)"
        return out
    out["status"] = "Failed"
    crash = _runner_crash(run)
    if crash:  # it died on its own before it could record anything (an import error, say): show its words
        out["secondary_status"] = "Runner failed"
        out["failure"] = (f"The local runner stopped before it could start the trainer:\n{crash}\n"
                          "This is a bug in Cloud LoRA Trainer or a broken install; the full output is in "
                          f"{run / 'runner.out'}.")
        return out
    gone = (f"The local runner (pid {runner_pid}) is gone without recording an exit status: the machine restarted "
            "or the process was killed.")
    if has_checkpoint(jobdir):
        out["secondary_status"] = "Interrupted"
        out["failure"] = f"{gone} The trainer saved a checkpoint. {_resume_hint(jobdir)}"
    else:
        out["secondary_status"] = "Orphaned"
        out["failure"] = (f"{gone} No checkpoint was saved yet: Resume (`cloudlora resume {jobdir.name}`) starts it "
                          "again from step 0, or create the job again.")
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
