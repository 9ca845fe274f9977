"""Under load: 8 clients of the REST API list jobs, datasets and models, follow a training job and upload checkpoints
for a bounded time, against a store on SeaweedFS (S3 on loopback) and a local store; no answer is a 5xx, none is
torn, none is lost, and of 4 uploads racing for one name exactly one wins. bench/robust/load.py is the same run
with more clients, for the figures in BENCHMARKS.md "Load"."""
from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENTS, SECONDS = 8, 12.0


def _load_module():
    spec = importlib.util.spec_from_file_location("cloudlora_bench_load", ROOT / "bench" / "robust" / "load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("store_kind", ["s3", "local"])
def test_parallel_clients_get_no_5xx_no_torn_answer_and_one_winner_per_name(store_kind, s3_server, tmp_path):
    load = _load_module()
    started = time.monotonic()
    figures = load.one_run(tmp_path / "run", s3_server, store_kind, CLIENTS, SECONDS)
    wall = time.monotonic() - started
    print(f"\n{store_kind}: " + json.dumps({k: v for k, v in figures.items() if k not in ("routes", "examples")}))
    assert figures["server_errors"] == 0, figures["examples"]["server_errors"]
    assert figures["torn"] == 0, figures["examples"]["torn"]
    assert figures["transport"] == 0, figures["examples"]["transport"]
    assert figures["requests"] >= 30, "the clients hardly got an answer"
    assert figures["contested_winners"] == 1, "two uploads under one name both succeeded"
    assert figures["uploads_done"] >= 2
    assert wall < SECONDS + 120, f"the run was not bounded: {wall:.0f} s"
