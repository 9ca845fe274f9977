"""Which torch the trainer's managed venv gets: the host's when it is new enough, else a build for this machine's
accelerator (CUDA, ROCm, CPU, Apple), and the pip command that installs it.

The trainer's lock declares the torch range it is tested with (`# torch: >=FLOOR,<=NEWEST` in
cloud_backend/requirements-lock.txt). The WebUI's torch is reused only inside that range; below it (A1111 1.10.1's
2.1.2, Forge's 2.3.1) the venv gets its own torch:
- an NVIDIA GPU: a CUDA build that the driver runs, from the PyTorch index (`nvidia-smi` says the driver's CUDA;
  a CUDA 12 driver runs any 12.x build, so 12.0-12.5 take cu126);
- ROCm: the ROCm build; no GPU: the CPU build (never GB of CUDA wheels on a machine that cannot use them);
- macOS: the default wheel from PyPI (MPS).
When the PyTorch index cannot be reached, the choice says so and falls back to pip's own sources (PyPI or the user's
mirror); `resolve()` then refuses a resolution that would bring CUDA packages to a machine without an NVIDIA GPU.
`CLOUDLORA_TORCH_INDEX` (or the `torch_index` setting) replaces the PyTorch index: a URL of an index laid out like
https://download.pytorch.org/whl (mirrors, air-gapped sites), or a local folder of wheels.

Pure logic plus small probes (metadata, nvidia-smi, one HTTP request, `pip --dry-run`); never imports torch.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ... import system

ROOT = Path(__file__).resolve().parents[3]
LOCK = ROOT / "cloud_backend" / "requirements-lock.txt"
PYTORCH_INDEX = "https://download.pytorch.org/whl"
# Rough size of a venv with the lock and torch, for the doctor's disk check (measured: BENCHMARKS.md, setup).
VENV_GIB = {"cuda": 7.0, "rocm": 9.0, "cpu": 1.5, "mps": 1.5}


def version_tuple(version: str) -> tuple[int, ...]:
    """(2, 1, 2) for "2.1.2+cu121"; () for "" or nonsense."""
    nums = re.findall(r"\d+", version.partition("+")[0])
    return tuple(int(n) for n in nums[:3])


@dataclass(frozen=True)
class TorchRange:
    floor: str
    newest: str

    def admits(self, version: str) -> bool:
        v = version_tuple(version)
        return bool(v) and version_tuple(self.floor) <= v[:3] and v[:2] <= version_tuple(self.newest)[:2]

    @property
    def requirement(self) -> str:
        return f"torch>={self.floor},<={self.newest}"


def lock_range(lock: Path = LOCK) -> TorchRange:
    """The `# torch: >=A,<=B` line of the lock: the torch versions the lock is tested with."""
    m = re.search(r"^# torch: >=([\d.]+),<=([\d.]+)", lock.read_text(encoding="utf-8"), re.M)
    if not m:
        raise RuntimeError(f"{lock} has no '# torch: >=FLOOR,<=NEWEST' line")
    return TorchRange(m.group(1), m.group(2))


@dataclass(frozen=True)
class Machine:
    """What decides the torch build: the OS, the host's torch, the NVIDIA driver's CUDA, ROCm."""
    os: str  # "linux" | "windows" | "macos"
    host_torch: str = ""  # "2.1.2+cu121"; "" when the host has none
    driver_cuda: str = ""  # "12.4" from nvidia-smi; "" without an NVIDIA GPU
    rocm: str = ""  # "6.2" when ROCm is installed and the host torch is a ROCm build
    machine: str = "x86_64"


def host_torch() -> str:
    """The WebUI's torch version from its metadata (never imports torch); "" when it has none."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return ""


def driver_cuda() -> str:
    """The highest CUDA the NVIDIA driver runs ("12.4"), from nvidia-smi's header; "" without one."""
    exe = system.find_nvidia_smi()
    if not exe:
        return ""
    try:
        out = subprocess.run([exe], capture_output=True, text=True, timeout=15, errors="replace").stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    m = re.search(r"CUDA Version:\s*(\d+\.\d+)", out)
    return m.group(1) if m else ""


def detect() -> Machine:
    import platform

    torch_version = host_torch()
    label = torch_version.partition("+")[2]
    rocm = label[4:] if label.startswith("rocm") else ""
    if not rocm and not system.WINDOWS and os.path.exists("/opt/rocm/.info/version"):
        try:
            rocm = ".".join(Path("/opt/rocm/.info/version").read_text().strip().split(".")[:2])
        except OSError:
            rocm = ""
    kind = "windows" if system.WINDOWS else "macos" if system.MACOS else "linux"
    return Machine(kind, torch_version, driver_cuda(), rocm, platform.machine().lower())


@dataclass(frozen=True)
class Choice:
    kind: str  # "cuda" | "rocm" | "cpu" | "mps"
    requirement: str  # what pip is asked for
    index: str = ""  # the PyTorch index (or folder) it comes from; "" = pip's own sources
    reuse: bool = False
    why: str = ""
    notes: tuple[str, ...] = field(default=())
    named: bool = False  # the index is the user's own (CLOUDLORA_TORCH_INDEX): what it offers is taken as given

    def pip_args(self) -> list[str]:
        """The install arguments for torch alone (the lock follows in its own command, torch held)."""
        args = [self.requirement]
        if self.index and _is_folder(self.index):
            args += ["--no-index", "--find-links", self.index]
        elif self.index:
            args += ["--index-url", self.index.rstrip("/") + "/",
                     "--extra-index-url", "https://pypi.org/simple/"]
        return args


def _is_folder(index: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*://", index) or index.startswith("file:")


def _cuda_tag(cuda: str) -> str:
    """The PyTorch index for a driver that runs CUDA `cuda` (within the lock's range of torch)."""
    v = version_tuple(cuda)
    if v >= (13, 0):
        return "cu130"
    if v >= (12, 8):
        return "cu128"
    if v >= (12, 0):
        return "cu126"  # CUDA's minor-version compatibility: any 12.x driver runs a 12.x build
    if v >= (11, 8):
        return "cu118"
    return ""


def choose(machine: Machine, torch_range: TorchRange, index_base: str = "") -> Choice:
    """The torch for the trainer venv on this machine. Pure: tested case by case."""
    from dataclasses import replace

    choice = _choose(machine, torch_range, index_base)
    named = bool(index_base) and bool(choice.index)
    return replace(choice, named=named,
                   why=choice.why + (f", from the index you set ({choice.index}, CLOUDLORA_TORCH_INDEX)" if named else ""))


def _choose(machine: Machine, torch_range: TorchRange, index_base: str) -> Choice:
    base = (index_base or PYTORCH_INDEX).rstrip("/")
    folder = bool(index_base) and _is_folder(index_base)
    host = machine.host_torch
    label = host.partition("+")[2]
    if host and torch_range.admits(host):
        index = ""
        if label.startswith(("cu", "rocm")) or (label == "cpu" and machine.os != "macos"):
            index = base if folder else f"{base}/{label}"
        kind = "cuda" if label.startswith("cu") else "rocm" if label.startswith("rocm") else \
            "mps" if machine.os == "macos" else "cuda" if machine.driver_cuda and not label else "cpu"
        return Choice(kind, f"torch=={host}", index, reuse=True,
                      why=f"the WebUI's torch {host} is within the trainer's range ({torch_range.requirement}): "
                          f"reused")
    below = (f"the WebUI's torch {host} is older than the trainer's floor {torch_range.floor}" if host
             else "the WebUI has no torch")
    req = torch_range.requirement
    if machine.os == "macos":
        return Choice("mps", req, base if folder else "", why=f"{below}: the default macOS wheel (Apple MPS)")
    if machine.driver_cuda:
        tag = _cuda_tag(machine.driver_cuda)
        if tag:
            return Choice("cuda", req, base if folder else f"{base}/{tag}",
                          why=f"{below}: a CUDA build ({tag}) that this NVIDIA driver (CUDA {machine.driver_cuda}) runs")
        return Choice("cpu", req, base if folder else f"{base}/cpu",
                      why=f"{below}: the NVIDIA driver only runs CUDA {machine.driver_cuda}, older than any CUDA build "
                          f"of torch {torch_range.floor}+, so the CPU build",
                      notes=("Update the NVIDIA driver (CUDA 11.8 or newer) to train on the GPU.",))
    if machine.rocm and machine.os == "linux":
        tag = "rocm6.3" if version_tuple(machine.rocm) < (6, 4) else "rocm6.4"
        return Choice("rocm", req, base if folder else f"{base}/{tag}", why=f"{below}: the ROCm build ({tag})")
    return Choice("cpu", req, base if folder else f"{base}/cpu",
                  why=f"{below}: no NVIDIA GPU, so the CPU build (no CUDA packages)")


def fallback(choice: Choice, machine: Machine) -> Choice:
    """The same choice from pip's own sources, for when the PyTorch index cannot be reached."""
    note = {"cuda": "PyPI's Linux torch is a CUDA 12 build" if machine.os == "linux" else
                    "PyPI's Windows torch is CPU-only: training will run on the CPU until the PyTorch index is "
                    "reachable (then delete the trainer venv to rebuild it)",
            "cpu": "only a CPU build is accepted from there",
            "rocm": "PyPI has no ROCm build; only a build without CUDA packages is accepted",
            "mps": ""}[choice.kind]
    return Choice(choice.kind, choice.requirement, "", choice.reuse,
                  why=choice.why + f"; the PyTorch index {choice.index} cannot be reached, so pip's own sources"
                      + (f" ({note})" if note else ""), notes=choice.notes)


def reachable(index: str, timeout: float = 8.0) -> bool:
    """Whether the index (or folder) answers for torch: one GET of its torch page."""
    if not index:
        return True
    if _is_folder(index):
        path = index[len("file://"):] if index.startswith("file://") else index
        return os.path.isdir(path)
    try:
        with urllib.request.urlopen(index.rstrip("/") + "/torch/", timeout=timeout) as resp:  # noqa: S310 (https/loopback)
            return resp.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def index_setting(settings=None) -> str:
    return ((os.environ.get("CLOUDLORA_TORCH_INDEX") or getattr(settings, "torch_index", "") or "")).strip()


@dataclass
class Resolution:
    """What `pip install --dry-run` says the torch step will download: [(name, version, bytes or None)]."""
    packages: list[tuple[str, str, int | None]]
    error: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(size or 0 for _, _, size in self.packages)

    @property
    def torch_version(self) -> str:
        return next((v for n, v, _ in self.packages if n == "torch"), "")

    @property
    def cuda_packages(self) -> list[str]:
        return [n for n, _, _ in self.packages if n.startswith("nvidia-")]


def _size(url: str, timeout: float = 10.0) -> int | None:
    if url.startswith("file://"):
        try:
            return os.path.getsize(urllib.request.url2pathname(url[len("file://"):].split("#")[0]))
        except OSError:
            return None
    try:
        req = urllib.request.Request(url.split("#")[0], method="HEAD")
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            length = resp.headers.get("Content-Length")
            return int(length) if length else None
    except (OSError, urllib.error.URLError, ValueError):
        return None


def resolve(python: str, choice: Choice, timeout: float = 300.0) -> Resolution:
    """pip's own resolution of the torch step for `python`, without installing: names, versions, download sizes."""
    cmd = [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", "-",
           "--disable-pip-version-check", *choice.pip_args()]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, errors="replace",
                              env={**os.environ, "PYTHONUTF8": "1"})
    except (OSError, subprocess.SubprocessError) as err:
        return Resolution([], f"pip could not run: {err}")
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "is ignored: it is neither" not in ln]
        return Resolution([], "\n".join(lines[-6:]) or f"pip exit {proc.returncode}")
    try:
        items = json.loads(proc.stdout)["install"]
    except (ValueError, KeyError):
        return Resolution([], "pip's dry-run report could not be read")
    packages = []
    for item in items:
        meta, url = item.get("metadata", {}), (item.get("download_info") or {}).get("url", "")
        packages.append((meta.get("name", "?").lower(), meta.get("version", "?"), _size(url) if url else None))
    return Resolution(packages)


def refusal(choice: Choice, resolution: Resolution) -> str:
    """Why a resolution must not be installed on this machine, in words; "" when it may."""
    if choice.kind != "cuda" and resolution.cuda_packages and not choice.named:
        return (f"pip's sources offer only a CUDA build of torch {resolution.torch_version} "
                f"({len(resolution.cuda_packages)} CUDA packages, {resolution.total_bytes / 1e9:.1f} GB) for this "
                f"machine, which has no NVIDIA GPU. Make the PyTorch CPU index ({PYTORCH_INDEX}/cpu) reachable, or set "
                "CLOUDLORA_TORCH_INDEX to a mirror or a folder of CPU wheels, or point CLOUDLORA_TRAINER_PYTHON at an "
                "interpreter that already has the trainer's packages.")
    return ""


def human_size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"
