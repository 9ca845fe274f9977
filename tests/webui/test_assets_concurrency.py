"""Several users at once: writers of one key never fail and readers never see a torn record; two uploads under one
name never both succeed; two uploads of one file never trip over each other's resume state."""
from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest

from cloudlora.assets import models
from cloudlora.errors import UserError
from cloudlora.store import LocalStore, open_store
from tests.webui.test_assets_models import checkpoint


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return open_store(request.getfixturevalue("s3_settings"))


def test_eight_writers_of_one_record_never_fail_and_readers_never_see_half_of_it(store):
    writes = 200 if store.kind == "local" else 20  # S3 PUTs are atomic by themselves; the local store must be too
    errors, torn, reads = [], [], [0]
    done = threading.Event()

    def write(n: int) -> None:
        try:
            for i in range(writes):
                body = {"writer": n, "i": i, "pad": "x" * (4096 + 97 * n)}  # records of different lengths
                store.put_bytes("jobs/j1/job.json", json.dumps(body).encode(), metadata={"cloudlora-kind": "job"})
        except Exception as err:  # noqa: BLE001 - collected for the assertion
            errors.append(repr(err))

    def read() -> None:
        while not done.is_set():
            try:
                data = store.get_bytes("jobs/j1/job.json")
            except FileNotFoundError:
                continue  # not written yet
            reads[0] += 1
            try:
                json.loads(data)
            except ValueError:
                torn.append(data[:60])

    store.put_bytes("jobs/j1/job.json", b"{}")
    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in readers:
        t.join()
    assert errors == [], errors[:3]
    assert torn == [] and reads[0] > 0, f"{len(torn)} of {reads[0]} reads were torn"
    assert [o.key for o in store.list("jobs/")] == ["jobs/j1/job.json"]  # no temp file is ever listed
    assert store.head("jobs/j1/job.json").metadata == {"cloudlora-kind": "job"}


def test_a_create_only_write_lets_exactly_one_of_many_racers_win(store):
    from cloudlora.store.base import AlreadyExists

    wins, lost = [], []
    start = threading.Barrier(8)

    def claim(n: int) -> None:
        start.wait()
        try:
            store.put_bytes("models/m/.claim", str(n).encode(), if_absent=True)
            wins.append(n)
        except AlreadyExists:
            lost.append(n)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(lost) == 7
    assert store.get_bytes("models/m/.claim") == str(wins[0]).encode()


def test_two_uploads_of_different_checkpoints_under_one_name_cannot_both_succeed(store, tmp_path):
    a = checkpoint(tmp_path / "a.safetensors", extra_mib=20)
    b = checkpoint(tmp_path / "b.safetensors", extra_mib=20)
    results: dict[str, object] = {}

    def slow_start(p):  # both get past any up-front look before either sends a byte
        if p.phase == "uploading" and p.done == 0:
            time.sleep(1.0)

    def upload(path) -> None:
        try:
            results[path.name] = models.upload_model(store, path, name="shared", progress=slow_start)
        except UserError as err:
            results[path.name] = err

    threads = [threading.Thread(target=upload, args=(p,)) for p in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [n for n, r in results.items() if isinstance(r, dict)]
    refused = [r for r in results.values() if isinstance(r, UserError)]
    assert len(won) == 1 and len(refused) == 1, results
    assert "Another upload under the model name 'shared'" in refused[0].message
    assert "another name" in refused[0].fix
    winner = tmp_path / won[0]
    listed = models.list_models(store)
    assert [(m["name"], m["sha256"]) for m in listed] == [("shared", hashlib.sha256(winner.read_bytes()).hexdigest())]
    # Nothing of the loser is left behind, and the name claim is gone once the manifest guards the name.
    assert sorted(o.key for o in store.list("models/")) == sorted(["models/shared/manifest.json",
                                                                  f"models/shared/{won[0]}"])


def test_two_uploads_of_the_same_checkpoint_at_once_both_succeed_and_the_second_sends_nothing(s3_settings,
                                                                                               tmp_path, monkeypatch):
    monkeypatch.setattr("cloudlora.assets.transfer.PREFERRED_PART", 8 << 20)
    store = open_store(s3_settings)
    path = checkpoint(tmp_path / "same.safetensors", extra_mib=40)
    phases: dict[int, list[str]] = {0: [], 1: []}
    results: dict[int, object] = {}

    def progress(n: int, p) -> None:
        phases[n].append(p.phase)
        if n == 0 and p.phase == "uploading":
            time.sleep(0.3)  # paces the first upload so that the second starts while it runs

    def upload(n: int) -> None:
        try:
            results[n] = models.upload_model(store, path, name="same", progress=lambda p: progress(n, p))
        except Exception as err:  # noqa: BLE001 - collected for the assertion
            results[n] = err

    first = threading.Thread(target=upload, args=(0,))
    first.start()
    deadline = time.monotonic() + 30
    while "uploading" not in phases[0] and time.monotonic() < deadline:  # the second starts mid-upload
        time.sleep(0.02)
    time.sleep(0.3)
    second = threading.Thread(target=upload, args=(1,))
    second.start()
    first.join()
    second.join()
    assert all(isinstance(r, dict) for r in results.values()), results
    size = path.stat().st_size
    assert results[0]["bytes_sent"] == size and results[1]["bytes_sent"] == 0
    assert "waiting for another upload of this file" in phases[1]
    back = models.download_model(store, "same", tmp_path / "back")
    assert hashlib.sha256(back.read_bytes()).hexdigest() == results[0]["sha256"]
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_two_uploads_of_different_datasets_under_one_name_never_mix_their_files(store, tmp_path):
    from cloudlora.assets import datasets
    from tests.webui.test_assets_datasets import good_dataset

    a = good_dataset(tmp_path / "a", n=3, trigger="cat")
    b = good_dataset(tmp_path / "b", n=2, trigger="dog")
    results: dict[str, object] = {}

    def slow_start(p, paused=[]):  # noqa: B006 - one pause per upload, while it holds the name
        if p.phase == "uploading" and threading.get_ident() not in paused:
            paused.append(threading.get_ident())
            time.sleep(1.0)

    def upload(path) -> None:
        try:
            results[path.name] = datasets.upload_dataset(store, path, name="pets", progress=slow_start)
        except UserError as err:
            results[path.name] = err

    threads = [threading.Thread(target=upload, args=(p,)) for p in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [n for n, r in results.items() if isinstance(r, dict)]
    assert len(won) == 1, results
    assert "Another upload under the dataset name 'pets'" in next(
        r for r in results.values() if isinstance(r, UserError)).message
    trigger = {"a": "cat", "b": "dog"}[won[0]]
    keys = sorted(o.key for o in store.list("datasets/pets/"))
    assert all(k == "datasets/pets/manifest.json" or f"/10_{trigger}/" in k for k in keys), keys
    assert datasets.get_dataset(store, "pets")["triggers"] == [trigger]
