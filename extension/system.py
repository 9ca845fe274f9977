"""What kind of machine this is, in one place: every platform branch of the extension reads these names.

The WebUI side and the CLI never test `os.name` or `sys.platform` themselves; they read `WINDOWS` / `MACOS` here.
That keeps the branches few and findable, and lets the test suite's Windows run (tests/windows_mode) take the
Windows branches on Linux: `CLOUDLORA_PLATFORM=windows` makes WINDOWS true for the branches that can run anywhere
(stop by file, no pass_fds, no signals that Windows lacks, hard links instead of symlinks). It never turns on a
Windows-only API call on another OS: those go through `subprocess`/`_winapi` names that exist only there, looked up
with getattr and a harmless default.

Stdlib only: the detached runner imports it before anything else.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

_FORCED = os.environ.get("CLOUDLORA_PLATFORM", "").strip().lower()

WINDOWS: bool = os.name == "nt" or _FORCED == "windows"
MACOS: bool = sys.platform == "darwin" or _FORCED == "macos"
LINUX: bool = not WINDOWS and not MACOS and sys.platform.startswith("linux")


def find_nvidia_smi() -> str | None:
    """The nvidia-smi to run, or None. On Windows, older drivers install it outside PATH: in
    `%ProgramFiles%\\NVIDIA Corporation\\NVSMI` (before R400) or `%SystemRoot%\\System32` (DCH drivers)."""
    import shutil

    found = shutil.which("nvidia-smi")
    if found or not WINDOWS:
        return found
    folders = [Path(os.environ.get("ProgramFiles", r"C:\Program Files"), "NVIDIA Corporation", "NVSMI"),
               Path(os.environ.get("SystemRoot", r"C:\Windows"), "System32")]
    for folder in folders:
        exe = folder / "nvidia-smi.exe"
        if exe.is_file():
            return str(exe)
    return None

# Where a venv keeps its interpreter follows the real OS, never CLOUDLORA_PLATFORM (the files are laid out by it).
VENV_SCRIPTS: str = "Scripts" if os.name == "nt" else "bin"
VENV_PYTHON: str = "python.exe" if os.name == "nt" else "python"
