"""Sets up the local backend's managed trainer venv from nothing, as a user's first local job does, and reports what
it took: the torch chosen, the download size pip's dry run announced, the wall time and the venv's size on disk.

    python bench/setup/trainer_env.py --python PY [--torch-index URL|FOLDER] [--keep DIR]

PY is the interpreter that plays the WebUI's (the venv is made with it, as `sys.executable` in the WebUI); it needs
this project's WebUI-side dependencies (`pip install -e .` into a venv of that Python). Without --torch-index the
PyTorch index is a closed loopback port (as from CI: the choice says so and falls back to pip's own sources). pip's
cache is whatever this machine has (say which in BENCHMARKS.md): the figures are for a warm cache unless cleared.
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", required=True)
    ap.add_argument("--torch-index", default="")
    ap.add_argument("--keep", default="")
    args = ap.parse_args()
    if not args.torch_index:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            args.torch_index = f"http://127.0.0.1:{s.getsockname()[1]}/whl"
    data = Path(args.keep or tempfile.mkdtemp(prefix="cl-setup-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDLORA_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(CLOUDLORA_DATA_DIR=str(data / "data"), CLOUDLORA_CONFIG_DIR=str(data / "config"),
               CLOUDLORA_TORCH_INDEX=args.torch_index)
    t0 = time.monotonic()
    proc = subprocess.run([args.python, str(ROOT / "extension" / "bootstrap.py"), "-m", "cloudlora.jobs.local_backend.trainer_env"],
                          env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        print(out[-3000:], file=sys.stderr)
        return 1
    choice = next((ln for ln in out.splitlines() if ln.startswith("torch: ")), "")
    announced = re.search(r"\(([\d.]+ [MG]B) to download at most", out)
    venv = data / "data" / "trainer-venv"
    ready = re.search(r"Trainer environment ready \(torch ([^,]+), (\w+)\)", out)
    print(f"python: {subprocess.run([args.python, '-V'], capture_output=True, text=True).stdout.strip()}")
    print(choice)
    print(f"| torch | kind | torch step announced | setup wall time | venv on disk |")
    print(f"| {ready.group(1) if ready else '?'} | {ready.group(2) if ready else '?'} | "
          f"{announced.group(1) if announced else '?'} | {seconds:.0f} s | {du(venv) / 1e9:.1f} GB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
