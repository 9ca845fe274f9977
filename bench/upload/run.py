"""Upload benchmark: a 2 GiB file to a local S3 server (SeaweedFS), our uploader vs `aws s3 cp` vs s5cmd, in one run.

Also: the bytes re-sent when an upload killed at 50 % resumes, and the time of a dedupe hit (hash cached).
Run from the repository root (not in CI; it needs ~6 GiB of free disk and a quiet machine):

    .venv/webui/bin/python bench/upload/run.py [--size-mib 2048] [--rounds 2] [--out bench/upload/results.json]

It sets up .venv/bench (awscli, which pins its own botocore) when missing. Big temporary files are deleted at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
MiB = 1 << 20


def sh(cmd, env=None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t


def ensure_awscli() -> Path:
    aws = ROOT / ".venv" / "bench" / "bin" / "aws"
    if not aws.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ROOT / ".venv" / "bench")], check=True)
        subprocess.run([str(aws.parent / "pip"), "install", "-q", "awscli>=1.40,<2"], check=True)
    return aws


def make_file(path: Path, size: int) -> None:
    block = os.urandom(64 * MiB)
    with open(path, "wb") as f:
        left, i = size, 0
        while left > 0:
            chunk = block[: min(left, len(block))]
            f.write(i.to_bytes(8, "little") + chunk[8:])  # every 64 MiB block differs
            left -= len(chunk)
            i += 1


KILLABLE = textwrap.dedent("""
    import sys
    from cloudlora.assets import transfer
    from cloudlora.store.s3 import S3Store
    import boto3
    client = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
    transfer.upload_file(S3Store(client, sys.argv[2]), sys.argv[3], sys.argv[4])
""")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "upload" / "results.json"))
    ap.add_argument("--sweep", action="store_true", help="also try other part sizes / thread counts (hash cached)")
    args = ap.parse_args()
    size = args.size_mib * MiB
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < 4 * size + (2 << 30):
        print(f"not enough free disk in {tempfile.gettempdir()}: {free >> 30} GiB", file=sys.stderr)
        return 1
    aws = ensure_awscli()
    s5cmd = Path(sys.executable).with_name("s5cmd")
    from tests.webui.fixtures import s3 as fx

    work = Path(tempfile.mkdtemp(prefix="cloudlora-bench-"))
    os.environ.update({"CLOUDLORA_DATA_DIR": str(work / "data"), "CLOUDLORA_CONFIG_DIR": str(work / "config"),
                       "AWS_EC2_METADATA_DISABLED": "true"})
    sock = Path(tempfile.mkdtemp(prefix="sw-"))
    (work / "weed").mkdir()
    server = fx._start(work / "weed", sock, work / "weed.log")
    results: dict = {"size_bytes": size, "rounds": args.rounds, "runs": {}}
    try:
        fx._wait_ready(server)
        os.environ.update(server.env())
        os.environ.pop("AWS_REGION", None)
        env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
        client = server.client()
        bucket = server.new_bucket("bench")
        src = work / "big.bin"
        make_file(src, size)

        from cloudlora.assets import hashcache, models, transfer
        from cloudlora.store.s3 import S3Store

        store = S3Store(client, bucket)

        def ours_cold(key):
            cache = hashcache.cache_file()
            if cache.exists():
                cache.unlink()
            t = time.perf_counter()
            transfer.upload_file(store, key, src, skip_if_same=False)
            return time.perf_counter() - t

        def ours_cached(key):
            hashcache.sha256_file(src)
            t = time.perf_counter()
            transfer.upload_file(store, key, src, skip_if_same=False)
            return time.perf_counter() - t

        tools = {
            "ours (incl. SHA-256)": ours_cold,
            "ours (hash cached)": ours_cached,
            "aws s3 cp": lambda key: sh([str(aws), "s3", "cp", str(src), f"s3://{bucket}/{key}", "--only-show-errors",
                                         "--endpoint-url", server.endpoint], env),
            "s5cmd": lambda key: sh([str(s5cmd), "--endpoint-url", server.endpoint, "cp", str(src),
                                     f"s3://{bucket}/{key}"], env),
        }
        times: dict[str, list[float]] = {k: [] for k in tools}
        for r in range(args.rounds):
            for name, fn in tools.items():
                key = f"bench/{r}/{name.split()[0]}-{len(times[name])}"
                times[name].append(fn(key))
                client.delete_object(Bucket=bucket, Key=key)
                print(f"round {r}: {name}: {times[name][-1]:.2f} s", flush=True)
        for name, ts in times.items():
            best = min(ts)
            results["runs"][name] = {"seconds": ts, "best_s": best, "MiB_per_s": size / MiB / best}
        fastest_baseline = min(results["runs"][n]["best_s"] for n in ("aws s3 cp", "s5cmd"))
        for name, run in results["runs"].items():
            run["speed_vs_fastest_baseline"] = fastest_baseline / run["best_s"]

        if args.sweep:
            results["sweep"] = []
            hashcache.sha256_file(src)
            for part_mib, threads in [(8, 8), (16, 4), (16, 8), (16, 16), (32, 8), (64, 4), (64, 8)]:
                key = f"bench/sweep/{part_mib}-{threads}"
                t = time.perf_counter()
                transfer.upload_file(store, key, src, skip_if_same=False, part_size=part_mib * MiB,
                                     threads=threads)
                dt = time.perf_counter() - t
                client.delete_object(Bucket=bucket, Key=key)
                results["sweep"].append({"part_mib": part_mib, "threads": threads, "seconds": dt,
                                         "MiB_per_s": size / MiB / dt})
                print(f"sweep part {part_mib} MiB x {threads} threads: {dt:.2f} s", flush=True)

        # Resume after a kill at 50 %: a subprocess uploads; we SIGKILL it once half of the parts are stored.
        key = "bench/resume/big.bin"
        proc = subprocess.Popen([sys.executable, "-c", KILLABLE, server.endpoint, bucket, key, str(src)],
                                env=env, cwd=ROOT)
        kept = 0
        while proc.poll() is None:
            ups = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            if ups:
                parts = client.list_parts(Bucket=bucket, Key=key, UploadId=ups[0]["UploadId"]).get("Parts", [])
                kept = sum(p["Size"] for p in parts)
                if kept >= size // 2:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.02)
        proc.wait()
        ups = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        if not ups:
            raise SystemExit("the upload finished before it could be killed: use a larger --size-mib")
        def stored() -> int:
            return sum(p["Size"] for p in client.list_parts(Bucket=bucket, Key=key, UploadId=ups[0]["UploadId"])
                       .get("Parts", []))

        kept, previous = stored(), -1
        while kept != previous:  # parts fully sent before the kill may still land on the server
            time.sleep(0.5)
            previous, kept = kept, stored()
        t = time.perf_counter()
        res = transfer.upload_file(store, key, src)
        results["resume"] = {"killed_at_fraction": kept / size, "bytes_kept": kept, "bytes_resent": res.bytes_sent,
                             "bytes_missing": size - kept, "extra_bytes": res.bytes_sent - (size - kept),
                             "resume_s": time.perf_counter() - t}
        print("resume:", results["resume"], flush=True)

        # Dedupe hit: the same checkpoint again, under another name, with the hash cached.
        ckpt = work / "model.safetensors"
        header = json.dumps({"cond_stage_model.transformer.text_model.x": {"dtype": "U8", "shape": [size - 4096],
                                                                           "data_offsets": [0, size - 4096]}})
        with open(ckpt, "wb") as f:
            raw = header.encode()
            f.write(len(raw).to_bytes(8, "little") + raw)
        os.truncate(ckpt, 8 + len(raw) + size - 4096)
        models.upload_model(store, ckpt, name="bench-model")
        t = time.perf_counter()
        again = models.upload_model(store, ckpt, name="bench-model-again")
        results["dedupe"] = {"seconds": time.perf_counter() - t, "bytes_sent": again["bytes_sent"],
                             "deduplicated": again["deduplicated"], "file_bytes": ckpt.stat().st_size}
        print("dedupe:", results["dedupe"], flush=True)
    finally:
        fx.stop_server(server)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sock, ignore_errors=True)
    results["machine"] = {"cpus": os.cpu_count(), "load_avg_end": os.getloadavg()}
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
