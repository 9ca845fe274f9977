"""Local jobs where Windows' rules hold (WINDOWS.md rows 1-14, 22, M2-M4): no fcntl, no SIGHUP, no pass_fds or
preexec_fn, no signal to stop with, and `os.kill(pid, 0)` would send Ctrl+C to the WebUI's console.

The runner and the trainer run with CLOUDLORA_PLATFORM=windows and a sitecustomize that takes those away from them
(fcntl, resource and SIGHUP gone; Popen refuses pass_fds and preexec_fn as CPython's Windows Popen does); this
process takes the Windows branches through system.WINDOWS. What only Windows can show (CREATE_NO_WINDOW, the Job
object, junctions, TerminateProcess) is listed in docs/windows.md as needing a real Windows check.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloudlora import locks, processes, system
from cloudlora.errors import UserError
from cloudlora.jobs.local_backend import local, local_status, runner
from cloudlora.jobs import service
from cloudlora.jobs.spec import JobSpec

WINDOWS_SITE = '''
import subprocess, sys, signal
for name in ("fcntl", "resource", "termios", "pwd", "grp"):
    sys.modules[name] = None
# (SIGKILL stays: psutil's POSIX kill() sends it; on Windows psutil calls TerminateProcess instead.)
for name in ("SIGHUP", "SIGUSR1", "SIGUSR2", "SIGCHLD", "SIGQUIT", "SIGALRM", "SIGPIPE"):
    if hasattr(signal, name):
        delattr(signal, name)
_init = subprocess.Popen.__init__
def _windows_init(self, *args, **kwargs):
    assert not kwargs.get("pass_fds"), "pass_fds not supported on Windows."
    assert kwargs.get("preexec_fn") is None, "preexec_fn is not supported on Windows platforms"
    _init(self, *args, **kwargs)
subprocess.Popen.__init__ = _windows_init
'''


@pytest.fixture
def windows(tmp_path, monkeypatch):
    """The Windows branches here, and Windows' missing modules and calls in the processes the jobs start."""
    site = tmp_path / "windows-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(WINDOWS_SITE, encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("CLOUDLORA_PLATFORM", "windows")
    monkeypatch.setattr(system, "WINDOWS", True)
    monkeypatch.setattr(system, "LINUX", False)

    _no_kill_from_the_extension(monkeypatch)


def _no_kill_from_the_extension(monkeypatch):
    """os.kill from the extension's code fails the test (on Windows signal 0 is CTRL_C_EVENT and SIGTERM is
    TerminateProcess); psutil's own POSIX internals may use it."""
    real = os.kill

    def kill(pid, sig):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("cloudlora"):
            raise AssertionError(f"os.kill({pid}, {sig}) from {caller}")
        return real(pid, sig)

    monkeypatch.setattr(os, "kill", kill)


def _spec(env, name="win_lora") -> JobSpec:
    return JobSpec(model=env.model, dataset=env.dataset, family="sd15", config=service.default_config("sd15"),
                   lora_name=name, backend="local")


def _wait_for(job_id, statuses, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = service.get_job(job_id, auto_pull=False)
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(f"{job_id} never reached {statuses}: {service.get_job(job_id, auto_pull=False)}")


def test_a_local_job_trains_and_stops_by_file_without_fcntl_sighup_pass_fds_or_signals(job_env, fake_trainer,
                                                                                        windows):
    fake_trainer(steps=200, delay=0.1)
    job = service.create_job(_spec(job_env))
    _wait_for(job["id"], ("Training",))  # every status read above used psutil, never os.kill(pid, 0)
    assert "stopping" in service.stop_job(job["id"])["message"]
    done = _wait_for(job["id"], ("Stopped", "Failed"))
    assert (done["status"], done["secondary_status"]) == ("Stopped", "Stopped by user (checkpoint kept)"), done
    jobdir = job_env.store_dir / "jobs" / job["id"]
    assert (jobdir / "checkpoints" / "state.txt").read_text().isdigit()
    assert "runner failed" not in (jobdir / "runner" / "runner.out").read_text(errors="replace").lower()
    model = next((jobdir / "input" / "data" / "model").iterdir())
    assert not model.is_symlink() and model.stat().st_nlink == 2, "a hard link, not a symlink or a copy"


def test_a_trainer_that_does_not_honour_stop_is_ended_after_the_grace_time(job_env, fake_trainer, windows,
                                                                            monkeypatch):
    fake_trainer(steps=400, delay=0.1)
    monkeypatch.setenv("FAKE_IGNORE_STOP", "1")
    monkeypatch.setenv("CLOUDLORA_STOP_GRACE_S", "1")
    job = service.create_job(_spec(job_env))
    _wait_for(job["id"], ("Training",))
    trainer_pid = int((job_env.store_dir / "jobs" / job["id"] / "runner" / "trainer.pid").read_text())
    service.stop_job(job["id"])
    done = _wait_for(job["id"], ("Stopped", "Failed"), timeout=30)
    assert done["status"] == "Stopped" and "without stopping by itself" in done["secondary_status"], done
    assert not processes.alive(trainer_pid)


def test_liveness_tells_a_reused_pid_and_a_zombie_from_ours(tmp_path, monkeypatch):
    _no_kill_from_the_extension(monkeypatch)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pidfile = tmp_path / "trainer.pid"
        pidfile.write_text(str(proc.pid))
        assert local_status.alive(proc.pid, pidfile=pidfile)
        os.utime(pidfile, (time.time() - 3600, time.time() - 3600))  # written long before this process started
        assert not local_status.alive(proc.pid, pidfile=pidfile), "a pid reused by a later process is not ours"
        proc.terminate()
        time.sleep(0.5)  # ended, not reaped yet: a zombie
        assert not processes.alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert not processes.alive(proc.pid) and not processes.alive(0)


def test_a_process_tree_is_ended_with_its_children(tmp_path):
    code = ("import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
            "print(c.pid, flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    processes.kill_tree(proc.pid, timeout=2)
    proc.wait(5)
    deadline = time.time() + 5
    while processes.alive(child) and time.time() < deadline:
        time.sleep(0.1)
    assert not processes.alive(child), "TensorBoard's data server (a child) must not be left behind"


def test_children_start_without_a_window_detached_and_in_utf8(monkeypatch):
    flags = {"CREATE_NO_WINDOW": 0x08000000, "CREATE_NEW_PROCESS_GROUP": 0x200, "CREATE_BREAKAWAY_FROM_JOB": 0x1000000}
    for name, value in flags.items():
        monkeypatch.setattr(subprocess, name, value, raising=False)
    monkeypatch.setattr(system, "WINDOWS", True)
    assert processes.popen_kwargs() == {"creationflags": 0x08000000}
    assert processes.popen_kwargs(detach=True) == {"creationflags": 0x08000000 | 0x200 | 0x1000000}
    calls = []

    def popen(cmd, **kwargs):
        calls.append(kwargs.get("creationflags"))
        if kwargs["creationflags"] & 0x1000000:
            raise PermissionError(5, "Access is denied")  # a Job object that forbids breakaway
        return "started"

    monkeypatch.setattr(subprocess, "Popen", popen)
    assert processes.spawn(["x"], detach=True) == "started"
    assert calls == [0x08000000 | 0x200 | 0x1000000, 0x08000000 | 0x200]
    env = processes.child_env({"PATH": "/bin"})
    assert env["PYTHONUTF8"] == "1" and env["PATH"] == "/bin"


def test_posix_children_of_the_webui_get_their_own_session():
    if system.WINDOWS:
        pytest.skip("the POSIX branch")
    assert processes.popen_kwargs(detach=True) == {"start_new_session": True}
    assert processes.popen_kwargs() == {}


def test_locks_without_fcntl_exclude_a_second_holder_and_stay_private(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "_fcntl", lambda: None)  # Windows: filelock (msvcrt.locking there)
    path = tmp_path / "x.lock"
    first, second = locks.Lock(path), locks.Lock(path)
    assert first.try_acquire()
    assert not second.try_acquire()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    first.release()
    assert second.try_acquire()
    second.release()


def test_a_volume_that_cannot_lock_is_named_not_a_crash(tmp_path, monkeypatch):
    class NoLocks:
        LOCK_EX, LOCK_NB = 2, 4

        @staticmethod
        def flock(fd, how):
            raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(locks, "_fcntl", lambda: NoLocks)
    with pytest.raises(UserError, match="does not support file locks") as err:
        locks.Lock(tmp_path / "smb.lock").try_acquire()
    assert "CLOUDLORA_DATA_DIR" in str(err.value)


def test_the_runner_ends_a_trainer_that_ignores_a_stop_after_the_grace_time(tmp_path):
    stop = tmp_path / "stop-requested"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stop.write_text("1")
    code, forced = runner._wait(proc, stop.exists, grace=0.5)
    assert forced is not None and forced >= 0.5 and code != 0


def test_a_windows_path_over_the_limit_is_refused_before_the_job_starts(tmp_path, monkeypatch):
    monkeypatch.setattr(system, "WINDOWS", True)
    dataset = tmp_path / "ds"
    deep = dataset / "10_trigger" / ("long_folder_name_" * 8)
    deep.mkdir(parents=True)
    (deep / ("image_" * 10 + ".png")).write_bytes(b"x")
    with pytest.raises(UserError, match="over Windows' limit") as err:
        local.check_path_lengths(tmp_path / "store" / "jobs" / "cl-demo-0123456789", dataset)
    assert "LongPathsEnabled" in str(err.value)
    local.check_path_lengths(tmp_path / "j", tmp_path / "empty")  # short: fine


def test_a_copy_cut_short_is_not_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(system, "WINDOWS", True)
    monkeypatch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(OSError(errno.EXDEV, "another volume")))
    src, dest = tmp_path / "model.safetensors", tmp_path / "job" / "model.safetensors"
    src.write_bytes(b"m" * 1000)
    dest.parent.mkdir()
    dest.write_bytes(b"m" * 10)  # what a crash during an in-place copy left
    local.link_or_copy(src, dest)
    assert dest.read_bytes() == src.read_bytes() and not dest.is_symlink()
    assert not list(dest.parent.glob("*.copying"))
