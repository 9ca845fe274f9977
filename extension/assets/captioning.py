"""Captioning a dataset on this machine: the captioner's weights (captioners.py), then the trainer-side captioner
(`python -m cloudlora_backend.trainer.captions`) in the trainer's interpreter, read one JSON line per image.

The trainer venv is found the way local jobs find it (jobs.local_backend.trainer_env: the configured interpreter, else
the managed venv, created on first use when `setup` allows it). The captioner writes each caption atomically beside
its image; here its events become Progress (images done, time left, the image) for the tab and REST, and `on_event`
for the CLI. `caption_dataset` is the one function behind the tab's Caption, `cloudlora dataset caption` and
`POST /datasets/caption`.
"""
from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import bootstrap, processes
from ..errors import UserError
from . import captioners
from .progress import Cancelled, Progress, ProgressCallback

MODES = ("keep", "append", "replace")
DETAILS = ("short", "detailed")
DEVICES = ("auto", "cpu", "cuda")
MODE_HELP = {"keep": "keep existing captions, caption only the images without one",
             "append": "add the new tags/sentence after the existing caption",
             "replace": "replace every caption"}


@dataclass
class CaptionOptions:
    captioner: str = "wd14"
    mode: str = "keep"
    threshold: float = 0.35
    character_threshold: float = 0.85
    exclude: str = ""
    detail: str = "short"
    device: str = "auto"

    def check(self) -> "CaptionOptions":
        captioners.get(self.captioner)
        for value, allowed, what in ((self.mode, MODES, "mode"), (self.detail, DETAILS, "detail"),
                                     (self.device, DEVICES, "device")):
            if value not in allowed:
                raise UserError(f"The {what} '{value}' is not one of {', '.join(allowed)}.",
                                f"Use one of: {', '.join(allowed)}.")
        for value, what in ((self.threshold, "threshold"), (self.character_threshold, "character threshold")):
            if not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:  # nan fails both comparisons
                raise UserError(f"The {what} {value} is not between 0 and 1.", "Use e.g. 0.35 (more tags: lower).")
        return self

    def args(self) -> list[str]:
        out = ["--with", self.captioner, "--mode", self.mode, "--device", self.device]
        if self.captioner == "wd14":
            out += ["--threshold", str(float(self.threshold)),
                    "--character-threshold", str(float(self.character_threshold))]
            if self.exclude.strip():
                out += ["--exclude", self.exclude.strip()]
        else:
            out += ["--detail", self.detail]
        return out


def trainer_python(*, setup: bool = False, log: Callable[[str], None] = print) -> str:
    """The trainer's interpreter (as local jobs resolve it); with `setup` the managed venv is created if need be."""
    from .. import settings
    from ..jobs.local_backend import trainer_env

    python, ready = trainer_env.resolve(settings.resolve())
    if ready:
        return python
    if not setup:
        raise UserError(f"Captioning runs in the trainer environment, which is not set up yet "
                        f"({trainer_env.venv_dir()}).",
                        "Run `cloudlora dataset caption ... --setup` once (or any local training job) to create it "
                        "(torch and the trainer's packages, a few GB), or set CLOUDLORA_TRAINER_PYTHON.")
    try:
        return trainer_env.ensure(log=log)
    except trainer_env.SetupError as err:
        raise UserError(f"Setting up the trainer environment failed: {err.reason}",
                        err.fix or "run `cloudlora doctor` to see what is missing") from None


def command(python: str, root: Path | str, model_dir: Path | str, opts: CaptionOptions) -> list[str]:
    return bootstrap.command(python, "-m", "cloudlora_backend.trainer.captions", "--dataset", str(root),
                             "--model-dir", str(model_dir), *opts.args())


def _failure(code: int, error: str, tail: list[str], python: str) -> UserError:
    if error:
        return UserError(f"Captioning stopped: {error}", "Fix what it names and run Caption again: captions "
                         "already written are kept (mode keep skips them).")
    text = "\n".join(tail[-8:])
    if "No module named" in text and "cloudlora_backend.trainer.captions" in text:
        return UserError(f"The trainer environment ({python}) has no captioner.",
                         "Update the extension (git pull), then run Caption again.")
    if "No module named 'onnxruntime'" in text or "No module named 'transformers'" in text:
        return UserError(f"The trainer environment ({python}) lacks the captioner's packages: {tail[-1]}",
                         "Delete the trainer-venv folder in the data folder (it is rebuilt with them on the next "
                         "use), or install the trainer's lock into CLOUDLORA_TRAINER_PYTHON.")
    return UserError(f"Captioning failed (exit {code}): {tail[-1] if tail else 'no output'}",
                     "Run `cloudlora dataset caption` from a terminal to see the whole output.")


def caption_dataset(root: Path | str, opts: CaptionOptions, *, python: str | None = None, setup: bool = False,
                    progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
                    on_event: Callable[[dict], None] | None = None, log: Callable[[str], None] | None = None,
                    token: str = "") -> dict:
    """Captions the dataset folder `root` with `opts` and returns the captioner's summary
    ({images, written, kept, seconds, tags: {tag: count}}, plus root and captioner). Raises UserError in words.

    `setup`: create the trainer venv first when it is not there (the tab and REST; the CLI asks for --setup).
    `log`: the setup's and the download's lines; by default they go to `progress` (phase "preparing")."""
    opts.check()
    if log is None:
        def log(line: str) -> None:
            if progress and line.strip():
                progress(Progress("preparing", 0, 0, item=line.strip()[-90:]))
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"{root} does not exist or is not a folder.", "Give the dataset folder.")
    python = python or trainer_python(setup=setup, log=log)
    model_dir = captioners.ensure(opts.captioner, token=token, progress=progress, cancel=cancel, announce=log)
    cmd = command(python, root, model_dir, opts)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
                            errors="replace", env=processes.child_env(), **processes.popen_kwargs())
    watcher = None
    if cancel is not None:
        def watch() -> None:  # ends with the captioner: no thread is left waiting after a run
            while proc.poll() is None:
                if cancel.wait(0.5):
                    processes.kill_tree(proc.pid, timeout=3)
                    return
        watcher = threading.Thread(target=watch, daemon=True, name="cloudlora-caption-cancel")
        watcher.start()
    summary: dict = {}
    error, tail = "", []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        try:
            event = json.loads(line) if line.startswith("{") else None
        except ValueError:
            event = None
        if not isinstance(event, dict):
            if line:
                tail = (tail + [line])[-40:]
                log(line)
            continue
        kind = event.get("event")
        if kind == "error":
            error = str(event.get("message", ""))
        elif kind == "summary":
            summary = event
        elif kind in ("start", "image", "skipped") and progress:
            total = int(event.get("total") or 0)
            done = int(event.get("done") or 0)
            eta = event.get("eta_s")
            progress(Progress("captioning", done, total, eta=float(eta) if eta is not None else None,
                              item=str(event.get("image", "")), files_done=done, files_total=total))
        if on_event:
            on_event(event)
    code = proc.wait()
    if watcher is not None:
        watcher.join(5)
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")
    if code != 0 or error or not summary:
        raise _failure(code, error, tail, python)
    return {**summary, "root": str(root), "captioner": opts.captioner}


def progress_text(p: Progress | None) -> str:
    """'captioning 3/10 images · 0:12 left · 10_demo/a.png' (or a download's bytes and rate)."""
    from .progress import format_duration

    if p is None:
        return "starting…"
    if p.phase == "preparing":
        return f"preparing: {p.item}"
    if p.phase != "captioning":
        return p.text() + (f" · {p.item}" if p.item else "")
    left = f" · {format_duration(p.eta)} left" if p.eta is not None else ""
    return f"captioning {p.done}/{p.total} images{left}" + (f" · {p.item}" if p.item else "")
