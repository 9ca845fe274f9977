"""The memory and time of a dataset check on huge PNGs: 12000 x 12000 (432 MB of pixels, ~420 KB on disk), one and
four of them, against the baseline of decoding each image whole with PIL (what the check did before), in one run:

    .venv/webui/bin/python bench/robust/image_check.py [--out bench/robust/image_check.json]

Each case runs in its own process; its peak resident memory is VmHWM (ru_maxrss would include the parent's).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = textwrap.dedent("""
    import sys, time
    from cloudlora.assets.dataset_check import check_dataset
    t = time.monotonic()
    report = check_dataset(sys.argv[1])
    assert report.summary["images"] == int(sys.argv[2]), report.text()
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))  # this program's own peak
    print(json.dumps({"seconds": time.monotonic() - t, "peak_mib": int(hwm.split()[1]) / 1024}))
""").replace("import sys, time", "import json, sys, time")

WHOLE_DECODE = textwrap.dedent("""
    import io, json, sys, time
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path
    from PIL import Image
    Image.MAX_IMAGE_PIXELS = None

    def decode(path):  # the check before: the file in memory, verify, then a whole decode
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
        with Image.open(io.BytesIO(data)) as img:
            img.load()

    t = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(decode, sorted(Path(sys.argv[1]).rglob("*.png"))))
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))  # this program's own peak
    print(json.dumps({"seconds": time.monotonic() - t, "peak_mib": int(hwm.split()[1]) / 1024}))
""")


def run(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT,
                         timeout=1800)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return {k: round(v, 1) for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from tests.webui.test_assets_hostile import _big_png

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "robust" / "image_check.json"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cloudlora-pngs-"))
    results = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "cases": []}
    for count in (1, 4):
        folder = work / f"ds{count}" / "10_big"
        folder.mkdir(parents=True)
        first = _big_png(folder / "0.png")
        for i in range(1, count):
            _big_png(folder / f"{i}.png", width=12000 - i)  # distinct images, not duplicates
        base = run(WHOLE_DECODE, str(folder.parent))
        ours = run(CHECK, str(folder.parent), str(count))
        case = {"images": count, "png_kib": first.stat().st_size >> 10, "whole_decode": base, "check": ours,
                "memory_ratio": round(base["peak_mib"] / ours["peak_mib"], 1),
                "time_ratio": round(base["seconds"] / ours["seconds"], 2)}
        results["cases"].append(case)
        print(json.dumps(case), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
