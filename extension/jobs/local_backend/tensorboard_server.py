""""Open TensorBoard": a TensorBoard on 127.0.0.1 over one job's event files, started on demand.

It runs in the trainer's interpreter (which has tensorboard; the WebUI's venv does not), bound to loopback on a
free port, one per job, and every one is stopped with the WebUI (background.register_stopper) or at exit. For a
SageMaker job the log dir is the local mirror of the events that SageMaker syncs to S3 during the run.
"""
from __future__ import annotations

import atexit
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from ... import private_files, processes
from ...errors import UserError

_servers: dict[str, tuple[subprocess.Popen, str]] = {}
_lock = threading.Lock()
_registered = False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stderr_file(logdir: Path) -> Path:
    """TensorBoard's own output for the events in `logdir`: beside that folder (the job's output/)."""
    return Path(logdir).parent / "tensorboard-server.log"


def _register_stopper() -> None:
    global _registered
    if _registered:
        return
    try:
        from ... import background

        background.register_stopper(stop_all)
    except ImportError:
        pass
    atexit.register(stop_all)
    _registered = True


def start(key: str, logdir: Path, python: str, *, timeout: float = 60.0) -> str:
    """The URL of a TensorBoard over `logdir` (reused when one already runs for `key`)."""
    with _lock:
        running = _servers.get(key)
        if running and running[0].poll() is None:
            return running[1]
        logdir = Path(logdir)
        logdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        cmd = [python, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
               "--port", str(port), "--reload_interval", "5"]
        # Its chatter goes to a file beside the events, not a pipe: nobody reads the pipe while it runs, and a full
        # one (about 4 KiB on Windows) blocks TensorBoard until it stops answering.
        err_path = stderr_file(logdir)
        try:
            with private_files.open_file(err_path, "wb") as err_out:
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err_out, stdin=subprocess.DEVNULL,
                                        env=processes.child_env(), **processes.popen_kwargs())
        except OSError as err:
            raise UserError(f"TensorBoard could not start with {python}: {err}",
                            "Check the trainer interpreter (`cloudlora doctor`).") from err
        url = f"http://127.0.0.1:{port}/"
        _register_stopper()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = err_path.read_bytes().decode("utf-8", "replace")[-800:]
                raise UserError(f"TensorBoard exited at start: {err.strip() or proc.returncode}",
                                "The trainer environment needs the tensorboard package (cloud_backend/requirements-lock.txt).")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                _servers[key] = (proc, url)
                return url
            except OSError:
                time.sleep(0.5)
        processes.kill_tree(proc.pid)
        raise UserError(f"TensorBoard did not answer on {url} within {timeout:.0f} s.", "Try again.")


def stop_all() -> None:
    with _lock:
        items = list(_servers.values())
        _servers.clear()
    for proc, _url in items:
        if proc.poll() is None:
            processes.kill_tree(proc.pid)  # with its tensorboard-data-server child, which terminate() left behind
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
