"""Load: N parallel clients of the REST API listing, uploading and following a training job at once, against a store
on SeaweedFS (S3 on loopback) or a local folder. Counts every answer: 5xx, torn (unparsable or incomplete) JSON,
transport failures, and the latency of each route. tests/webui/test_load.py runs it in CI; run alone it measures
1, 4, 8 and 16 clients in one run (1 client is the baseline of the ratios in BENCHMARKS.md "Load"):

    .venv/webui/bin/python bench/robust/load.py [--seconds 15] [--clients 1,4,8,16]
        [--stores s3,s3-uncached,local] [--out bench/robust/results.json]

"s3-uncached" is the S3 store making a new boto3 client for every request, as before the shared client
(cloudlora.store.s3.make_client), for the ratio of that change in the same run.

The job is run by tests/webui/jobs_support/fake_trainer.py (the trainer's container contract, seconds per job), so
the figures are the extension's, not the GPU's.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
API = "/cloudlora/v1"


@dataclass
class Tally:
    """What the clients saw, summed under a lock."""
    requests: int = 0
    by_status: dict = field(default_factory=dict)
    server_errors: list = field(default_factory=list)  # (route, status, body head)
    torn: list = field(default_factory=list)  # (route, body head)
    transport: list = field(default_factory=list)  # (route, error)
    latency: dict = field(default_factory=dict)  # route -> [seconds]
    uploads_done: int = 0
    uploads_refused: int = 0
    contested_winners: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, route: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests += 1
            self.by_status[status] = self.by_status.get(status, 0) + 1
            self.latency.setdefault(route, []).append(seconds)

    def summary(self, seconds: float, clients: int) -> dict:
        every = sorted(x for xs in self.latency.values() for x in xs)

        def pct(xs, p):
            return round(xs[min(len(xs) - 1, int(p * len(xs)))] * 1000, 1) if xs else None

        routes = {r: {"n": len(xs), "p50_ms": pct(sorted(xs), 0.5), "p95_ms": pct(sorted(xs), 0.95),
                      "max_ms": round(max(xs) * 1000, 1)} for r, xs in sorted(self.latency.items())}
        return {"clients": clients, "seconds": round(seconds, 1), "requests": self.requests,
                "requests_per_s": round(self.requests / seconds, 1) if seconds else 0.0,
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "server_errors": len(self.server_errors), "torn": len(self.torn), "transport": len(self.transport),
                "p50_ms": pct(every, 0.5), "p95_ms": pct(every, 0.95),
                "mean_ms": round(statistics.fmean(every) * 1000, 1) if every else None,
                "uploads_done": self.uploads_done, "uploads_refused": self.uploads_refused,
                "contested_winners": self.contested_winners, "routes": routes,
                "examples": {"server_errors": self.server_errors[:3], "torn": self.torn[:3],
                             "transport": self.transport[:3]}}


def _check_shape(route: str, data) -> bool:
    """A complete answer of the route, not just any JSON."""
    if route == "GET /jobs":
        return isinstance(data, list) and all(isinstance(j, dict) and "id" in j and "status" in j for j in data)
    if route in ("GET /jobs/{id}",):
        return isinstance(data, dict) and {"id", "status", "step", "log_tail"} <= set(data)
    if route in ("GET /datasets", "GET /models"):
        return isinstance(data, dict) and isinstance(data.get(route.split("/")[-1]), list)
    return True


def _call(client, tally: Tally, route: str, method: str, url: str, **kw):
    start = time.perf_counter()
    try:
        r = client.request(method, url, **kw)
    except Exception as err:  # noqa: BLE001 - a transport failure is a finding, not a crash of the run
        with tally.lock:
            tally.transport.append((route, f"{type(err).__name__}: {err}"[:200]))
        return None, None
    tally.add(route, r.status_code, time.perf_counter() - start)
    if r.status_code >= 500:
        with tally.lock:
            tally.server_errors.append((route, r.status_code, r.text[:300]))
        return r.status_code, None
    try:
        data = r.json()
    except ValueError:
        with tally.lock:
            tally.torn.append((route, r.text[:200]))
        return r.status_code, None
    if r.status_code == 200 and not _check_shape(route, data):
        with tally.lock:
            tally.torn.append((route, r.text[:200]))
    return r.status_code, data


def _upload(client, tally: Tally, path: Path, name: str, deadline: float) -> str:
    """POST /models/upload and follow its task; "done", "failed" or "refused"."""
    status, data = _call(client, tally, "POST /models/upload", "POST", f"{API}/models/upload",
                         json={"path": str(path), "name": name})
    if status != 200 or not data:
        return "refused"
    while time.monotonic() < deadline + 60:
        status, task = _call(client, tally, "GET /models/tasks/{id}", "GET", f"{API}/models/tasks/{data['task_id']}")
        if task and task.get("status") in ("done", "failed", "cancelled"):
            return task["status"]
        time.sleep(0.1)
    return "timeout"


def run_clients(base_url: str, *, clients: int, seconds: float, job_id: str, files: list[Path],
                contested: list[Path]) -> dict:
    """`clients` threads for `seconds`: each lists jobs, datasets and models, follows the job and its log, and
    uploads its own checkpoints; at the start, all of them upload different files under one name at once (exactly
    one may win). Returns the figures (Tally.summary)."""
    import httpx

    tally = Tally()
    start_gate = threading.Barrier(clients)
    deadline = time.monotonic() + seconds

    def client_loop(n: int) -> None:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            start_gate.wait()
            if n < len(contested):  # a name race: everyone at once
                result = _upload(client, tally, contested[n], "contested", deadline)
                with tally.lock:
                    tally.contested_winners += result == "done"
            mine = [f for i, f in enumerate(files) if i % clients == n]
            i = 0
            while time.monotonic() < deadline:
                _call(client, tally, "GET /jobs", "GET", f"{API}/jobs")
                _call(client, tally, "GET /jobs/{id}", "GET", f"{API}/jobs/{job_id}")
                _call(client, tally, "GET /datasets", "GET", f"{API}/datasets")
                _call(client, tally, "GET /models", "GET", f"{API}/models")
                _call(client, tally, "GET /jobs/{id}/logs", "GET", f"{API}/jobs/{job_id}/logs")
                if mine and i % 3 == 0:
                    result = _upload(client, tally, mine.pop(0), f"load-{n}-{i}", deadline)
                    with tally.lock:
                        tally.uploads_done += result == "done"
                        tally.uploads_refused += result != "done"
                i += 1

    threads = [threading.Thread(target=client_loop, args=(n,), name=f"load-client-{n}") for n in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally.summary(time.monotonic() - t0, clients)


# --- a server and a job to point the clients at ----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def api_server():
    """The extension's REST routes on a real HTTP server (uvicorn) on 127.0.0.1; yields its base URL."""
    import uvicorn
    from fastapi import FastAPI

    from cloudlora.api import mount

    app = FastAPI()
    mount(app, None)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_keep_alive=30))
    thread = threading.Thread(target=server.run, name="load-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def fake_trainer_python(folder: Path, steps: int, delay: float) -> str:
    """An interpreter wrapper that runs the fake trainer (CLOUDLORA_TRAINER_PYTHON) for `steps` x `delay` s."""
    script = folder / "fake-python"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT}/tests/webui/jobs_support/fake_trainer.py" "$@"\n')
    script.chmod(0o755)
    os.environ.update(FAKE_STEPS=str(steps), FAKE_DELAY=str(delay), FAKE_FAIL="", FAKE_CRASH_ON_STOP="",
                      FAKE_OUTLIVE_RUNNER="")
    return str(script)


def checkpoints(folder: Path, count: int, prefix: str, mib: int = 1) -> list[Path]:
    """`count` distinct SD 1.5-looking checkpoints of about `mib` MiB."""
    from tests.webui.test_assets_family import SD15, write_safetensors

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        path = write_safetensors(folder / f"{prefix}-{i}.safetensors",
                                 {**{k: (8, 4) for k in SD15}, "model.diffusion_model.pad": (mib, 1 << 19)})
        with open(path, "r+b") as f:
            f.seek(-(mib << 20), os.SEEK_END)
            f.write(os.urandom(mib << 20))
        out.append(path)
    return out


def start_job(base_url: str, model: str, dataset: str) -> str:
    import httpx

    r = httpx.post(f"{base_url}{API}/jobs", json={"model": model, "dataset": dataset, "lora_name": "load",
                                                    "backend": "local"}, timeout=120)
    r.raise_for_status()
    return r.json()["id"]


def main() -> int:
    sys.path.insert(0, str(ROOT))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--clients", default="1,4,8,16")
    ap.add_argument("--stores", default="s3,s3-uncached,local")
    ap.add_argument("--out", default=str(ROOT / "bench" / "robust" / "results.json"))
    args = ap.parse_args()
    from tests.webui.fixtures.s3 import _start, _wait_ready, stop_server

    results = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "cpus": os.cpu_count(), "runs": []}
    work = Path(tempfile.mkdtemp(prefix="cloudlora-load-"))
    (work / "weed").mkdir()
    server = _start(work / "weed", work, work / "weed.log")
    try:
        _wait_ready(server)
        for store_kind in args.stores.split(","):
            for n in (int(x) for x in args.clients.split(",")):
                results["runs"].append({"store": store_kind, **one_run(work / f"{store_kind}-{n}", server,
                                                                       store_kind, n, args.seconds)})
                r = results["runs"][-1]
                print(f"{store_kind:5} {n:3} clients: {r['requests_per_s']:7.1f} req/s  p50 {r['p50_ms']} ms  "
                      f"p95 {r['p95_ms']} ms  5xx {r['server_errors']}  torn {r['torn']}  "
                      f"transport {r['transport']}", flush=True)
    finally:
        stop_server(server)
    for run in results["runs"]:
        base = next(r for r in results["runs"] if r["store"] == run["store"] and r["clients"] == 1)
        run["throughput_vs_1_client"] = round(run["requests_per_s"] / base["requests_per_s"], 2)
        run["p95_vs_1_client"] = round(run["p95_ms"] / base["p95_ms"], 2)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def one_run(folder: Path, server, store_kind: str, clients: int, seconds: float) -> dict:
    """A fresh user (settings, data dir, store) with a model, a dataset and a running job; then the clients."""
    from tests.webui.test_assets_datasets import good_dataset

    from cloudlora.store import s3 as s3_store

    folder.mkdir(parents=True)
    s3_store.CLIENT_TTL_S = 0.0 if store_kind == "s3-uncached" else 600.0
    env = {"CLOUDLORA_CONFIG_DIR": str(folder / "config"), "CLOUDLORA_DATA_DIR": str(folder / "data"),
           "CLOUDLORA_BACKEND": "local", "CLOUDLORA_TRAINER_PYTHON": fake_trainer_python(folder, 400, 0.1)}
    if store_kind.startswith("s3"):
        bucket = server.new_bucket("load")
        env.update(server.env(), CLOUDLORA_BUCKET=bucket)
    else:
        env["CLOUDLORA_STORE"] = str(folder / "store")
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from cloudlora import settings
        from cloudlora.assets.datasets import upload_dataset
        from cloudlora.assets.models import upload_model
        from cloudlora.jobs import service
        from cloudlora.store import open_store

        store = open_store(settings.resolve())
        model = upload_model(store, checkpoints(folder / "base", 1, "base")[0], name="base")["name"]
        dataset = upload_dataset(store, good_dataset(folder / "ds", n=2), name="ds")["name"]
        with api_server() as url:
            job_id = start_job(url, model, dataset)
            figures = run_clients(url, clients=clients, seconds=seconds, job_id=job_id,
                                  files=checkpoints(folder / "up", max(4, clients * 2), "up"),
                                  contested=checkpoints(folder / "contested", min(clients, 4), "contested"))
            service.stop_job(job_id)
        return figures
    finally:
        from tests.webui.fixtures.jobs import _kill_jobs

        _kill_jobs(folder / "store")
        _kill_jobs(folder / "data")
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


if __name__ == "__main__":
    sys.exit(main())
