"""Whether this machine has a GPU the local trainer can use, told without importing torch, and cached.

nvidia-smi answers for NVIDIA GPUs (the WebUI side never imports torch: the trainer's torch lives in its own
environment); Apple silicon has MPS. Anything else trains on the CPU. The answer is cached for the process:
the estimate asks on every form change.
"""
from __future__ import annotations

import functools
import os
import platform
import subprocess

from ... import processes, system


@functools.lru_cache(maxsize=1)
def describe() -> str:
    """The GPU's name ("NVIDIA A10G", "Apple MPS"), or "" when training would run on the CPU."""
    exe = system.find_nvidia_smi()
    if exe:
        try:
            out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=10, check=True, encoding="utf-8", errors="replace",
                                 **processes.popen_kwargs()).stdout.strip().splitlines()
        except (OSError, subprocess.SubprocessError):
            out = []
        if out and out[0].strip():
            return out[0].strip()
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return "Apple MPS"
    return ""


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
