"""The fake A1111 1.10.1 host with this extension installed as "Install from URL" leaves it, for tests/host.

- `install_extension(webui)`: `git clone` of this checkout into `<webui>/extensions/<EXTENSION>/`, then the working
  tree's uncommitted changes on top (modified and untracked-not-ignored files; deleted files removed), so local edits
  are what runs. Ignored paths (.venv, .cache, artifacts) never travel.
- `reset_venv(python)`: puts the WebUI venv back to how tools/env.sh built it (.venv/host/pristine-freeze.txt), i.e.
  as before the extension was installed, so every run sees the first start's install.py do its work.
- `Host`: the WebUI process (`python launch.py ...` in the WebUI folder, its own process group), with its URL, log,
  Lora folder and the REST helpers the tests use; `stop()` is Ctrl+C, then the whole group is ended.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAKE_A1111 = Path(__file__).resolve().parent / "fake_a1111"


def _stack() -> str:
    """Which host stack this venv is (tools/env.sh): "forge" with gradio 4 (.venv/host-forge), else "a1111"."""
    import importlib.metadata

    return "forge" if importlib.metadata.version("gradio").startswith("4.") else "a1111"


STACK = _stack()
PINS = ROOT / "tools" / ("forge-pins.txt" if STACK == "forge" else "a1111-pins.txt")
# The PyTorch index of this machine for the managed trainer venv (tools/env.sh env_torch_index: the floor torch for
# Python 3.10 as PyPI serves it). CI cannot reach download.pytorch.org; a user's machine names none.
TORCH_INDEX = ROOT / ".cache" / "torch-index" / "cp310"
EXTENSION = "cloud-lora-trainer"  # the folder name Install from URL gives it (the repository's name)
API_AUTH = ("alice", "s3cret")


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def install_extension(webui: Path) -> Path:
    """Clones this checkout into the WebUI's extensions folder and overlays the uncommitted changes."""
    dest = webui / "extensions" / EXTENSION
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(dest)], check=True)
    assert _git("rev-parse", "HEAD", cwd=dest) == _git("rev-parse", "HEAD"), "the clone is not at this checkout's HEAD"
    # Staged or not (diff against HEAD, deletions included), and new files that git does not ignore.
    changed = _git("diff", "-z", "--name-only", "HEAD", "--").split("\0")
    changed = [p for p in changed + _git("ls-files", "-z", "--others", "--exclude-standard").split("\0") if p]
    for rel in changed:
        src, target = ROOT / rel, dest / rel
        if src.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
        elif not src.exists() and (target.is_file() or target.is_symlink()):
            target.unlink()  # deleted in the working tree
    return dest


def new_webui(base: Path) -> Path:
    """A WebUI folder: the fake host's files, models/Stable-diffusion, models/Lora (empty) and extensions/."""
    webui = base / "stable-diffusion-webui"
    shutil.copytree(FAKE_A1111, webui, ignore=shutil.ignore_patterns("__pycache__", "README.md"))
    for sub in ("models/Stable-diffusion", "models/Lora", "extensions"):
        (webui / sub).mkdir(parents=True, exist_ok=True)
    if STACK == "forge":  # what the extension (and every other) looks for to tell Forge from A1111
        (webui / "modules_forge").mkdir()
        (webui / "modules_forge" / "__init__.py").write_text('"""Forge\'s own package (stand-in: its presence)."""\n')
    return webui


def freeze(python: str) -> dict[str, str]:
    out = subprocess.run([python, "-m", "pip", "freeze", "--all"], check=True, capture_output=True, text=True).stdout
    return _parse_freeze(out)


def _parse_freeze(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        name, sep, version = line.partition("==")
        if sep:
            pins[name.lower().replace("_", "-")] = version
    return pins


def reset_venv(python: str) -> None:
    """Removes what an earlier run's install.py added and puts moved packages back (pristine-freeze.txt)."""
    pristine_file = Path(python).parents[1] / "pristine-freeze.txt"
    assert pristine_file.exists(), f"{pristine_file} is missing: run `source tools/env.sh; env_host`"
    pristine = _parse_freeze(pristine_file.read_text())
    now = freeze(python)
    extra = sorted(set(now) - set(pristine))
    moved = sorted(f"{name}=={pristine[name]}" for name in pristine if now.get(name) != pristine[name])
    if extra:
        subprocess.run([python, "-m", "pip", "uninstall", "-q", "-y", *extra], check=True)
    if moved:
        subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", *moved], check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Host:
    webui: Path
    python: str
    env: dict
    port: int = 0
    proc: subprocess.Popen | None = None
    log: Path | None = None
    args: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def extension(self) -> Path:
        return self.webui / "extensions" / EXTENSION

    @property
    def lora_dir(self) -> Path:
        return self.webui / "models" / "Lora"

    def start(self, *args: str, timeout: float = 180) -> "Host":
        """`python launch.py --port P --api --api-auth alice:s3cret ARGS` in the WebUI folder; waits until the
        extension's routes answer (they are added in app_started, the last step of the start)."""
        self.port = free_port()
        self.args = ["--port", str(self.port), "--api", "--api-auth", ":".join(API_AUTH), "--skip-torch-cuda-test",
                     "--no-download-sd-model", *args]
        self.log = self.webui / f"webui-{self.port}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([self.python, "launch.py", *self.args], cwd=self.webui, env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.get("/cloudlora/v1/version")
                return self
            except (OSError, AssertionError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"the WebUI did not come up:\n{self.log_text()}")
                time.sleep(0.5)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def stop(self) -> None:
        """Ctrl+C (A1111 exits at once), then every process of the WebUI's group (e.g. a TensorBoard it started)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    # --- REST, with the --api-auth credentials ---

    def request(self, method: str, path: str, body: dict | None = None, *, auth: bool = True,
                timeout: float = 60) -> tuple[int, object]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            token = base64.b64encode(":".join(API_AUTH).encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw)
            except ValueError:
                return err.code, raw.decode(errors="replace")

    def get(self, path: str, **kw):
        code, body = self.request("GET", path, **kw)
        assert code == 200, f"GET {path}: {code} {body}"
        return body

    def post(self, path: str, body: dict | None = None, **kw):
        code, out = self.request("POST", path, body if body is not None else {}, **kw)
        assert code == 200, f"POST {path}: {code} {out}"
        return out

    def wait_task(self, area: str, task_id: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task = self.get(f"/cloudlora/v1/{area}/tasks/{task_id}")
            if task["status"] != "running":
                assert task["status"] == "done", task
                return task["result"]
            time.sleep(0.5)
        raise AssertionError(f"{area} task {task_id} still running after {timeout} s")

    def wait_job(self, job_id: str, until=("Completed", "Failed", "Stopped"), timeout: float = 900) -> dict:
        deadline = time.monotonic() + timeout
        job = {}
        while time.monotonic() < deadline:
            job = self.get(f"/cloudlora/v1/jobs/{job_id}")
            if job["status"] in until:
                return job
            time.sleep(2)
        raise AssertionError(f"job {job_id} is {job.get('status')} after {timeout} s:\n"
                             + "\n".join(job.get("log_tail") or []))


def kill_runners(data_dir: Path, store_dirs: list[Path]) -> None:
    """Ends the detached runners and trainers the tests' jobs left (their own sessions outlive the WebUI)."""
    for base in [data_dir, *store_dirs]:
        for pidfile in list(base.glob("jobs/*/runner/*.pid")):
            try:
                pid = int(pidfile.read_text())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if str(pidfile.parents[1]).encode() in cmdline or b"cloudlora" in cmdline:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def host_env(home: Path) -> dict:
    """The WebUI's environment: this machine's, minus every CLOUDLORA_* and AWS_* setting, with the extension's
    config and data (the managed trainer venv lives there) under `home`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLOUDLORA_", "AWS_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(CLOUDLORA_CONFIG_DIR=str(home / "config"), CLOUDLORA_DATA_DIR=str(home / "data"),
               AWS_CONFIG_FILE=str(home / "aws-config"), AWS_SHARED_CREDENTIALS_FILE=str(home / "aws-credentials"),
               AWS_EC2_METADATA_DISABLED="true", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
               CLOUDLORA_TORCH_INDEX=str(TORCH_INDEX),
               PATH=os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p))
    if os.environ.get("CLOUDLORA_PLATFORM") == "windows":  # the Windows run (tools/test.sh): the WebUI and every
        # process it starts (install.py, runner, trainer) refuse Unix-only modules to the extension, as on Windows
        env.update(CLOUDLORA_PLATFORM="windows", PYTHONPATH=str(ROOT / "tests" / "windows_mode"))
    return env
