"""Setup and delete as background tasks with progress, for the "Set up AWS" panel and POST /cloudlora/v1/setup.

One task at a time per process: starting while one runs returns the running task's id (two stack updates at once
would only fight). Tasks are kept in memory; the last few finished ones stay readable for polling.
"""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from .. import background
from .. import settings as settings_mod
from ..errors import UserError

_KEEP = 10


@dataclass
class Task:
    id: str
    action: str  # "setup" | "delete"
    state: str = "running"  # "running" | "done" | "failed" | "declined"
    messages: list[str] = field(default_factory=list)
    result: dict = field(default_factory=dict)
    error: str = ""
    fix: str = ""
    started: float = field(default_factory=time.time)
    finished: float = 0.0

    def as_dict(self) -> dict:
        return {"id": self.id, "action": self.action, "state": self.state, "messages": list(self.messages),
                "result": dict(self.result), "error": self.error, "fix": self.fix, "started": self.started,
                "finished": self.finished}


_lock = threading.Lock()
_tasks: dict[str, Task] = {}
# Set when the WebUI unloads the scripts: a running task stops following (what AWS is doing goes on, and a later
# `cloudlora setup` picks it up where it is).
_unloading = threading.Event()


def _run(task: Task, settings: settings_mod.Settings, options: dict) -> None:
    from . import setup as aws_setup

    def progress(message: str) -> None:
        with _lock:
            task.messages.append(message)
        if _unloading.is_set():
            raise UserError("Stopped following setup because the WebUI reloaded; AWS carries on with the step it "
                            "was doing.", "Run Set up AWS again: it continues from where AWS is.")

    try:
        if task.action == "delete":
            empty_ok = bool(options.get("empty_bucket"))

            def confirm(question: str) -> bool:
                progress(question + (" Yes (empty_bucket)." if empty_ok else
                                     " Not confirmed: tick \"Also delete everything in the bucket\"."))
                return empty_ok

            done = aws_setup.delete_stack(settings, confirm=confirm, progress=progress)
            state, result = ("done" if done else "declined"), {"deleted": done}
        else:
            result = aws_setup.setup(settings, progress=progress,
                                     force_build=bool(options.get("rebuild"))).as_dict()
            state = "done"
        with _lock:
            task.result, task.state = result, state
    except UserError as err:
        with _lock:
            task.state, task.error, task.fix = "failed", err.message, err.fix or ""
    except Exception as err:  # noqa: BLE001 - reported to the poller instead of dying in the thread
        with _lock:
            task.state, task.error = "failed", f"{type(err).__name__}: {err}"
            task.fix = "Run `cloudlora setup` in a terminal for the full output, and report it if it persists."
    finally:
        with _lock:
            task.finished = time.time()


def start(action: str = "setup", *, settings: settings_mod.Settings | None = None, **options) -> str:
    """Starts setup (options: rebuild) or delete (options: empty_bucket) in the background; returns the task id."""
    if action not in ("setup", "delete"):
        raise UserError(f"Unknown action '{action}'.", "Use 'setup' or 'delete'.")
    settings = settings or settings_mod.resolve()
    with _lock:
        for task in _tasks.values():
            if task.state == "running":
                return task.id
        task = Task(id=uuid.uuid4().hex[:12], action=action)
        _tasks[task.id] = task
        finished = sorted((t for t in _tasks.values() if t.state != "running"), key=lambda t: t.started)
        for old in finished[:-_KEEP]:
            _tasks.pop(old.id, None)
    _unloading.clear()
    background.register_stopper(_unloading.set)
    background.start(f"aws-{action}", _run, task, settings, options)
    return task.id


def get(task_id: str) -> dict:
    with _lock:
        task = _tasks.get(task_id)
        if task is None:
            raise UserError(f"No setup task '{task_id}' (tasks live until the WebUI restarts).",
                            "Start setup again.")
        return task.as_dict()


def latest() -> dict | None:
    with _lock:
        if not _tasks:
            return None
        return max(_tasks.values(), key=lambda t: t.started).as_dict()
