"""pip's output read for people: what the trainer setup is downloading (package, size, progress, time left), and a
failed install explained in words with the fix.

pip runs with `--progress-bar raw`, which prints `Progress DONE of TOTAL` lines (pip >= 24.1; the venv's pip is
upgraded first); `Downloading NAME-VERSION-...whl (SIZE)` and `Using cached ...` say which file it is.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

_FILE = re.compile(r"^\s*(Downloading|Using cached|Processing)\s+(\S+?)(?:\s+\(([\d.]+)\s*([kMG]?B)\))?\s*$")
_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)\s*$")
_UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def _package(filename: str) -> str:
    """"torch 2.7.1" from "torch-2.7.1-cp310-cp310-manylinux_2_28_x86_64.whl" (or a URL/path to it)."""
    name = filename.rsplit("/", 1)[-1].split("#")[0]
    parts = name.split("-")
    return f"{parts[0]} {parts[1]}" if len(parts) >= 2 else name


@dataclass
class SetupProgress:
    """The setup's state for the job panel and the CLI; `update(line)` returns True when a line was pip's own
    progress (those are not worth a log line each)."""
    step: str = "Creating the trainer environment"
    package: str = ""
    done: int = 0
    total: int = 0
    downloaded: int = 0  # bytes finished in earlier files
    files: int = 0
    started: float = field(default_factory=time.time)
    _file_started: float = 0.0

    def update(self, line: str) -> bool:
        m = _PROGRESS.match(line.strip())
        if m:
            self.done, self.total = int(m.group(1)), int(m.group(2))
            if self.done >= self.total > 0:
                self.downloaded += self.total
                self.done = self.total
            return True
        m = _FILE.match(line)
        if m:
            self.package = _package(m.group(2))
            self.files += 1
            self.done = 0
            self.total = int(float(m.group(3)) * _UNITS[m.group(4)]) if m.group(3) else 0
            self._file_started = time.time()
            if m.group(1) != "Downloading":
                self.total = 0
        return False

    def rate(self) -> float:
        """Bytes per second of the file being downloaded."""
        spent = time.time() - self._file_started
        return self.done / spent if spent > 0.5 and self.done else 0.0

    def as_dict(self) -> dict:
        rate = self.rate()
        left = (self.total - self.done) / rate if rate and self.total > self.done else None
        return {"step": self.step, "package": self.package, "done": self.done, "total": self.total,
                "downloaded": self.downloaded, "rate": rate, "seconds_left": left, "started": self.started}


def describe(state: dict) -> str:
    """"downloading torch 2.7.1: 312 of 821 MB, 4.0 MB/s, about 2 min left" for the panel's second line."""
    step = state.get("step") or "Setting up the trainer environment"
    package, done, total = state.get("package"), int(state.get("done") or 0), int(state.get("total") or 0)
    if not package or not total or done >= total:
        return step + (f" ({package})" if package else "")
    text = f"{step}: downloading {package}: {done / 1e6:.0f} of {total / 1e6:.0f} MB"
    if state.get("rate"):
        text += f", {state['rate'] / 1e6:.1f} MB/s"
    left = state.get("seconds_left")
    if left is not None:
        text += f", about {left / 60:.0f} min left" if left >= 90 else f", about {left:.0f} s left"
    return text


# pip's failure lines, in words: (pattern, sentence, fix). {0}, {1}... are the pattern's groups.
_FAILURES = [
    (r"Package '([^']+)' requires a different Python: ([\d.]+) not in '([^']+)'",
     "{0} needs Python {2}; this interpreter is Python {1}, so the trainer's packages cannot install on it.",
     "Update the extension (its lock installs on Python 3.10-3.13), or point CLOUDLORA_TRAINER_PYTHON at an "
     "interpreter of another version."),
    (r"No matching distribution found for (\S+)",
     "pip found no {0} for this Python and this machine.",
     "Check the network and the package index (pip's own settings, CLOUDLORA_TORCH_INDEX), then start the job "
     "again; or point CLOUDLORA_TRAINER_PYTHON at an interpreter that has the trainer's packages."),
    (r"(No space left on device|Errno 28)",
     "The disk ran out of space while installing the trainer's packages (a CUDA setup takes about 7 GB).",
     "Free some space on the drive that holds the extension's data folder, then start the job again."),
    (r"(Could not install packages due to an OSError.*(?:Long Path|too long|Errno 2))",
     "A path in the trainer environment is too long for Windows.",
     "Turn on Windows long paths (LongPathsEnabled) or set CLOUDLORA_DATA to a short folder such as C:\\cl."),
    (r"(ConnectionError|Max retries exceeded|Temporary failure in name resolution|timed out|HTTPSConnectionPool)",
     "pip could not reach the package index to download the trainer's packages.",
     "Check the network (or proxy), then start the job again; setup resumes where pip's cache left off."),
    (r"(CUDA packages.*no NVIDIA GPU)",
     "{0}", ""),
]


def explain(output_tail: str, command: str = "") -> tuple[str, str]:
    """(what went wrong, the fix) for a failed pip run, from its last lines; a generic pair when nothing matches."""
    for pattern, sentence, fix in _FAILURES:
        m = re.search(pattern, output_tail)
        if m:
            return sentence.format(*m.groups()), fix
    last = next((ln.strip() for ln in reversed(output_tail.splitlines()) if ln.strip().startswith("ERROR")), "")
    last = last or next((ln.strip() for ln in reversed(output_tail.splitlines()) if ln.strip()), "")
    return (f"Installing the trainer's packages failed: {last or command}",
            "Read the job's log for pip's full output; `cloudlora doctor` checks the setup before a job.")
