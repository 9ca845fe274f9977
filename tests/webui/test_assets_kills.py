"""An upload killed 20 times at random points (kill -9 while hashing, sending parts, completing, writing the
manifest) leaves 0 corrupt objects, and each run resumes with only what is missing: the store holds the whole file,
verified, or nothing that lists. When a run gets to the end before its kill, the model is removed and the next run
starts a fresh upload, so that all 20 kills interrupt an upload."""
from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from cloudlora.assets import models
from cloudlora.store import open_store
from tests.webui.test_assets_models import checkpoint

ROOT = Path(__file__).resolve().parents[2]
KILLS = 20
UPLOADER = textwrap.dedent("""
    import sys, time
    from cloudlora import settings
    from cloudlora.assets import models
    from cloudlora.store import open_store

    def report(p):
        print("P", p.phase, p.done, p.total, flush=True)
        if p.phase == "uploading":
            time.sleep(0.05)  # paced, so that a kill can land anywhere in the transfer

    result = models.upload_model(open_store(settings.resolve()), sys.argv[1], name="killed", progress=report)
    print("DONE", result["bytes_sent"], flush=True)
""")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _corrupt_objects(client, bucket: str, want_sha: str, size: int) -> list[str]:
    """Every object of the model that is not what it claims: a file that is not the whole file, a manifest whose
    file is not complete and verified."""
    bad = []
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="models/").get("Contents", [])]
    for key in keys:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        if key.endswith(".safetensors"):
            meta = client.head_object(Bucket=bucket, Key=key)["Metadata"]
            if len(body) != size or _sha256(body) != want_sha or meta.get("sha256") != want_sha:
                bad.append(f"{key}: {len(body)} bytes, sha256 {_sha256(body)[:12]}")
        elif key.endswith("manifest.json"):
            file_key = "models/killed/big.safetensors"
            if file_key not in keys or _sha256(client.get_object(Bucket=bucket, Key=file_key)["Body"].read()) \
                    != want_sha:
                bad.append(f"{key} lists a file that is not complete")
    return bad


def test_an_upload_killed_20_times_at_random_points_leaves_0_corrupt_objects_and_resumes(
        s3_settings, s3_server, tmp_path):
    seed = int(os.environ.get("CLOUDLORA_KILL_SEED", time.time()))
    rng = random.Random(seed)
    path = checkpoint(tmp_path / "big.safetensors", extra_mib=48)
    size, want = path.stat().st_size, _sha256(path.read_bytes())
    env = {**os.environ, "CLOUDLORA_UPLOAD_THREADS": "2", "CLOUDLORA_PART_SIZE_MIB": "8"}
    client, bucket = s3_server.client(), s3_settings.bucket
    store = open_store(s3_settings)
    killed_at, corrupt, phases, attempts = [], [], set(), 0
    while len(killed_at) < KILLS:
        attempts += 1
        assert attempts < 3 * KILLS, f"seed {seed}: the kills keep missing the upload: {killed_at}"
        target = rng.random()  # the fraction of the file sent when it is killed (0: while starting or hashing)
        proc = subprocess.Popen([sys.executable, "-c", UPLOADER, str(path)], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
        seen = ("starting", 0)
        for line in proc.stdout:
            if line.startswith("P "):
                _p, phase, done, total = line.split()
                seen = (phase, int(done) / max(1, int(total)))
                if phase == "uploading" and seen[1] >= target or phase in ("verifying", "done") or target < 0.05:
                    break
            if line.startswith("DONE"):
                break
        time.sleep(rng.random() * 0.2)  # anywhere in the next moment, not just at a progress line
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
        corrupt += _corrupt_objects(client, bucket, want, size)
        if models.list_models(store):  # it finished before the kill: start a fresh upload next time
            models.delete_model(store, "killed")
            continue
        killed_at.append(f"{seen[0]} {seen[1]:.0%}")
        phases.add(seen[0])

    final = subprocess.run([sys.executable, "-c", UPLOADER, str(path)], env=env, cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    sent = int(final.stdout.split("DONE")[1].split()[0])
    print(f"\nseed {seed}: {KILLS} kills in {attempts} runs, at {killed_at}; the last run sent {sent} of {size} "
          "bytes")
    assert corrupt == [], f"seed {seed}: {corrupt[:5]}"
    assert "uploading" in phases, f"seed {seed}: no kill landed in the transfer: {killed_at}"
    assert sent < size, "the last run resumed nothing"
    listed = models.list_models(store)
    assert [(m["name"], m["sha256"], m["size"]) for m in listed] == [("killed", want, size)]
    back = models.download_model(store, "killed", tmp_path / "back")
    assert _sha256(back.read_bytes()) == want
    assert _corrupt_objects(client, bucket, want, size) == []
    assert sorted(o.key for o in store.list("models/")) == ["models/killed/big.safetensors",
                                                           "models/killed/manifest.json"]
