"""The processes the extension starts and watches, the same way on Windows, macOS and Linux: is it alive, stop its tree,
how to start it (no console window, detached from the WebUI) and its environment (UTF-8).

Liveness never uses `os.kill(pid, 0)`: on Windows signal 0 is CTRL_C_EVENT, which can send Ctrl+C to the WebUI's
console (and A1111 exits on Ctrl+C). psutil answers instead (5.9.5 is in A1111's venv), and its create_time tells a
reused pid from ours on every platform. The Windows-only `subprocess` names are looked up with getattr and 0, so the
suite's Windows run on Linux (system.WINDOWS forced) takes the same branches without calling a Windows API.
"""
from __future__ import annotations

import os
import subprocess
from typing import Iterable

from . import system

# Slack between a pid file's time and the process's start time: the pid file is written right after the start, and
# create_time has coarse resolution on some systems.
START_SLACK_S = 2.0


def alive(pid: int | None, started_before: float | None = None) -> bool:
    """Is `pid` a running process (not a zombie), and, with `started_before` (a time.time()), one that started no
    later than that (a pid reused by a later program started after)?"""
    if not pid or pid <= 0:
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:  # ended; its parent has not reaped it yet
            return False
        if started_before is not None and proc.create_time() > started_before + START_SLACK_S:
            return False
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # it exists (another user's, or protected); its start time is not readable
        return True
    return True


def _tree(pid: int) -> list:
    import psutil

    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    try:
        children = parent.children(recursive=True)
    except psutil.Error:
        children = []
    return [parent, *children]


def kill_tree(pid: int, *, timeout: float = 5.0, graceful: bool = True) -> int | None:
    """Ends `pid` and its descendants (TensorBoard's data server, a trainer's workers): terminate, wait up to
    `timeout` seconds, then kill what is left. On Windows terminate is TerminateProcess already, so this is the
    last resort there; a stop the process can honour goes through its stop file first.
    Returns `pid`'s exit status when it was this process's child (the wait here reaps it, so Popen.wait() cannot
    tell it any more), else None."""
    import psutil

    procs = _tree(pid)
    if not procs:
        return None
    for proc in procs if graceful else ():
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _gone, left = psutil.wait_procs(procs, timeout=timeout if graceful else 0)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=timeout)
    return getattr(procs[0], "returncode", None)


def children_die_with_me() -> bool:
    """Windows: puts this process in a new Job object that kills every process in it once its last handle closes,
    which happens when this process ends, however it ends (a crash, Task Manager). Processes started afterwards
    are in the job too, so a trainer never outlives its runner there: Windows has no parent-death signal, and a
    byte-range lock is not inherited, so a trainer left alone would hold the GPU while the next queued job starts.
    False (nothing done) elsewhere or when Windows refuses."""
    if not system.WINDOWS:
        return False
    global _job
    try:
        import ctypes
        from ctypes import wintypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    except (ImportError, OSError, AttributeError):  # not really Windows (the suite's forced-Windows run)
        return False

    class IoCounters(ctypes.Structure):
        _fields_ = [(n, ctypes.c_ulonglong) for n in ("Read", "Write", "Other", "ReadBytes", "WriteBytes", "OtherBytes")]

    class BasicLimits(ctypes.Structure):
        _fields_ = [("PerProcessUserTimeLimit", ctypes.c_int64), ("PerJobUserTimeLimit", ctypes.c_int64),
                    ("LimitFlags", wintypes.DWORD), ("MinimumWorkingSetSize", ctypes.c_size_t),
                    ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", wintypes.DWORD),
                    ("Affinity", ctypes.c_size_t), ("PriorityClass", wintypes.DWORD),
                    ("SchedulingClass", wintypes.DWORD)]

    class ExtendedLimits(ctypes.Structure):
        _fields_ = [("BasicLimitInformation", BasicLimits), ("IoInfo", IoCounters),
                    ("ProcessMemoryLimit", ctypes.c_size_t), ("JobMemoryLimit", ctypes.c_size_t),
                    ("PeakProcessMemoryUsed", ctypes.c_size_t), ("PeakJobMemoryUsed", ctypes.c_size_t)]

    job_object_extended_limit_information = 9
    job_object_limit_kill_on_job_close = 0x2000
    kernel32.CreateJobObjectW.restype = wintypes.HANDLE
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    job = kernel32.CreateJobObjectW(None, None)
    if not job:
        return False
    info = ExtendedLimits()
    info.BasicLimitInformation.LimitFlags = job_object_limit_kill_on_job_close
    if not kernel32.SetInformationJobObject(wintypes.HANDLE(job), job_object_extended_limit_information,
                                            ctypes.byref(info), ctypes.sizeof(info)):
        return False
    if not kernel32.AssignProcessToJobObject(wintypes.HANDLE(job), wintypes.HANDLE(kernel32.GetCurrentProcess())):
        return False
    _job = job  # never closed: the handle closes when this process ends, and that ends the job's processes
    return True


_job = None


def _windows_flags(names: Iterable[str]) -> int:
    flags = 0
    for name in names:
        flags |= getattr(subprocess, name, 0)  # 0 where subprocess has no such name (every OS but Windows)
    return flags


def popen_kwargs(*, detach: bool = False, breakaway: bool = True) -> dict:
    """Popen/run keyword arguments for a child process of the extension.

    Every child: no console window on Windows (CREATE_NO_WINDOW; a WebUI without a console, such as pythonw or a
    launcher, would flash one per child). detach=True, for the runner that must outlive the WebUI: its own process
    group (Ctrl+C or closing the WebUI's console does not reach it) and, with `breakaway`, out of the WebUI's Job
    object (a launcher's kill-on-close job would take it down); on POSIX its own session instead. Safe to call
    with no arguments."""
    names = ["CREATE_NO_WINDOW"]
    if detach:
        names.append("CREATE_NEW_PROCESS_GROUP")
        if breakaway:
            names.append("CREATE_BREAKAWAY_FROM_JOB")
    flags = _windows_flags(names) if system.WINDOWS else 0
    kwargs: dict = {}
    if flags:
        kwargs["creationflags"] = flags
    if detach and not _windows_flags(["CREATE_NEW_PROCESS_GROUP"]):
        kwargs["start_new_session"] = True  # POSIX (also the suite's forced-Windows run, which has no such flag)
    return kwargs


def spawn(cmd: list[str], *, detach: bool = False, **kwargs) -> subprocess.Popen:
    """Popen with popen_kwargs(detach=...). A WebUI inside a Job object that forbids breakaway makes
    CREATE_BREAKAWAY_FROM_JOB fail with access denied: then it starts again without it."""
    try:
        return subprocess.Popen(cmd, **popen_kwargs(detach=detach), **kwargs)
    except PermissionError:
        if not (detach and popen_kwargs(detach=True) != popen_kwargs(detach=True, breakaway=False)):
            raise
    return subprocess.Popen(cmd, **popen_kwargs(detach=detach, breakaway=False), **kwargs)


def child_env(env: dict | None = None) -> dict[str, str]:
    """The environment for a Python child (trainer, pip, TensorBoard, probes): a copy of `env` (default os.environ)
    with UTF-8 mode on. A redirected stdout on Windows otherwise uses the ANSI code page, strictly: printing a path
    under a Japanese or Cyrillic user name raises UnicodeEncodeError, and logs mix encodings."""
    out = dict(os.environ if env is None else env)
    out["PYTHONUTF8"] = "1"
    out.setdefault("PYTHONIOENCODING", "utf-8")
    return out
