"""Files only the user may read: the data folder, the config folder and the local store (0700 folders, 0600 files).

They hold the user's training photos, the paths of every hashed file and the AWS setup's names, so they are made
private when they are created (and tightened when an older version left them group- or world-readable). The WebUI
process's umask is never changed (it is the host's, and shared by every thread); each writer asks for its mode here.
LoRAs put into the WebUI's Lora folder are not private: they get the mode of the WebUI's other models (the umask).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
CHILD_UMASK = 0o077  # for processes the extension starts that write only into private folders (the job runner)


def ensure_dir(path: Path | str) -> Path:
    """Creates the folder (and missing parents) private to the user; an existing one of ours loses group/other bits."""
    path = Path(path)
    missing = []
    for p in (path, *path.parents):  # each missing folder is created 0700 (mkdir -p would give the parents 0755)
        if os.path.lexists(p):
            break
        missing.append(p)
    for p in reversed(missing):
        try:
            p.mkdir(mode=DIR_MODE)
        except FileExistsError:  # created meanwhile (another thread), or a file in the way: open() will say so
            pass
        except OSError:  # not allowed here (a read-only home): the writer that needs the folder says so
            return path
    tighten(path, DIR_MODE)
    return path


def tighten(path: Path | str, mode: int) -> None:
    """Removes the bits `mode` does not have, on a file or folder the user owns (others' files are left alone)."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return
    current = stat.S_IMODE(st.st_mode)
    if current & ~mode:
        try:
            os.chmod(path, current & mode)
        except OSError:
            pass


def open_fd(path: Path | str, flags: int) -> int:
    """os.open with mode 0600 for a new file; an existing file of ours is tightened to 0600 too.

    Always binary (O_BINARY): without it Windows' C runtime opens the fd in text mode and turns every 0x0A written
    into 0x0D 0x0A, so a checkpoint or PNG copied into the store would come out corrupt."""
    fd = os.open(path, flags | os.O_CREAT | getattr(os, "O_BINARY", 0), FILE_MODE)
    try:
        st = os.fstat(fd)
        if (not hasattr(os, "getuid") or st.st_uid == os.getuid()) and stat.S_IMODE(st.st_mode) & ~FILE_MODE:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & FILE_MODE)
    except (OSError, AttributeError):
        pass
    return fd


def open_file(path: Path | str, mode: str = "wb", **kwargs):
    """open() for writing ("wb", "ab", "w", "a", with encoding=...) with a private (0600) file."""
    flags = os.O_WRONLY | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    return os.fdopen(open_fd(path, flags), mode, **kwargs)


def write_bytes(path: Path | str, data: bytes) -> None:
    """Writes the file whole and private (the caller does its own tmp + replace when it needs atomicity)."""
    with open_file(path, "wb") as f:
        f.write(data)


def write_text(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    write_bytes(path, text.encode(encoding))
