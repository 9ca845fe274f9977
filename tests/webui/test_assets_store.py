"""The store contract: LocalStore and S3Store (on a real S3 server, SeaweedFS) behave the same."""
from __future__ import annotations

import hashlib
import os

import pytest

from cloudlora.assets import transfer
from cloudlora.store import LocalStore, open_store
from cloudlora.store.s3 import S3Store


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    settings = request.getfixturevalue("s3_settings")
    store = open_store(settings)
    assert isinstance(store, S3Store)
    return store


def test_bytes_round_trip_with_metadata(store):
    store.put_bytes("jobs/j1/job.json", b'{"a": 1}', metadata={"sha256": "abc"})
    assert store.get_bytes("jobs/j1/job.json") == b'{"a": 1}'
    info = store.head("jobs/j1/job.json")
    assert info.size == 8 and info.metadata["sha256"] == "abc"
    assert store.head("jobs/j1/nothing") is None
    with pytest.raises(FileNotFoundError):
        store.get_bytes("jobs/j1/nothing")


def test_list_delete_and_delete_prefix(store):
    for key in ["datasets/a/1_x/1.png", "datasets/a/1_x/1.txt", "datasets/b/manifest.json", "models/m/f"]:
        store.put_bytes(key, key.encode())
    assert sorted(o.key for o in store.list("datasets/a/")) == ["datasets/a/1_x/1.png", "datasets/a/1_x/1.txt"]
    assert {o.key: o.size for o in store.list("models/")} == {"models/m/f": len(b"models/m/f")}
    store.delete("models/m/f")
    assert store.head("models/m/f") is None
    assert store.delete_prefix("datasets/a/") == 2
    assert [o.key for o in store.list("datasets/")] == ["datasets/b/manifest.json"]


def test_file_upload_and_download_keep_every_byte(store, tmp_path):
    src = tmp_path / "model.safetensors"
    src.write_bytes(os.urandom(3 << 20) + b"end")
    seen = []
    store.put_file("models/m/model.safetensors", src, progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1] == src.stat().st_size
    info = store.head("models/m/model.safetensors")
    assert info.metadata["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    dest = tmp_path / "back" / "model.safetensors"
    store.download("models/m/model.safetensors", dest)
    assert dest.read_bytes() == src.read_bytes()


def test_uri_names_the_object(store):
    uri = store.uri("models/m/f")
    assert uri.endswith("models/m/f")
    assert uri.startswith("s3://") if store.kind == "s3" else os.path.isabs(uri)


def test_a_multipart_upload_with_parallel_parts_verifies_its_sha256(store, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(21 << 20))
    events = []
    result = transfer.upload_file(store, "models/big/big.bin", src, part_size=8 << 20, threads=3,
                                  progress=events.append)
    assert result.bytes_sent == src.stat().st_size
    if store.kind == "s3":
        assert (result.parts_sent, result.parts_total) == (3, 3)
    assert events[-1].phase == "done" and events[-1].done == src.stat().st_size
    assert {e.phase for e in events} >= {"hashing", "uploading", "done"}
    assert store.head("models/big/big.bin").metadata["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert not list(transfer.uploads_dir().glob("*.json")), "the resume state is removed after success"


def test_a_second_upload_of_the_same_file_sends_0_bytes(store, tmp_path):
    src = tmp_path / "same.bin"
    src.write_bytes(os.urandom(17 << 20))
    first = transfer.upload_file(store, "models/s/same.bin", src)
    second = transfer.upload_file(store, "models/s/same.bin", src)
    assert first.bytes_sent == src.stat().st_size
    assert second.skipped and second.bytes_sent == 0


def bytes_kept(store, key: str) -> int:
    """What an interrupted upload left in the store: the parts S3 holds, or the local .partial file."""
    if store.kind == "local":
        partial = store._path(key).with_name(key.rsplit("/", 1)[-1] + ".partial")
        return partial.stat().st_size if partial.exists() else 0
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=key).get("Uploads", [])
    assert len(uploads) == 1, uploads
    parts = store.client.list_parts(Bucket=store.bucket, Key=key, UploadId=uploads[0]["UploadId"])
    return sum(p["Size"] for p in parts.get("Parts", []))


def test_a_cancelled_upload_keeps_its_parts_and_the_next_run_sends_only_the_rest(store, tmp_path):
    import threading

    src = tmp_path / "cancel.bin"
    src.write_bytes(os.urandom(40 << 20))
    cancel = threading.Event()

    def stop_after_two_parts(p):
        if p.phase == "uploading" and p.done >= 16 << 20:
            cancel.set()

    with pytest.raises(transfer.Cancelled):
        transfer.upload_file(store, "models/c/cancel.bin", src, part_size=8 << 20, threads=1, cancel=cancel,
                             progress=stop_after_two_parts)
    assert store.head("models/c/cancel.bin") is None
    kept = bytes_kept(store, "models/c/cancel.bin")
    assert 0 < kept < src.stat().st_size
    again = transfer.upload_file(store, "models/c/cancel.bin", src, part_size=8 << 20, threads=2)
    assert again.resumed
    assert again.bytes_sent == src.stat().st_size - kept
    assert store.head("models/c/cancel.bin").metadata["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    back = tmp_path / "back.bin"
    store.download("models/c/cancel.bin", back)
    assert back.read_bytes() == src.read_bytes()


def test_part_sizes_keep_under_10000_parts():
    assert transfer.part_size_for(100 << 20) == 16 << 20
    assert transfer.part_size_for(7 << 30) == 16 << 20
    big = 1 << 40  # 1 TiB
    part = transfer.part_size_for(big)
    assert -(-big // part) <= 10_000 and part % (1 << 20) == 0


def test_after_a_failed_part_no_queued_part_starts():
    import threading
    import time

    started = []

    def send(n):
        started.append(n)
        time.sleep(0.05)
        if n == 2:
            raise ConnectionError("network down")
        return n

    stop = threading.Event()
    with pytest.raises(ConnectionError):
        transfer.run_parallel(send, list(range(40)), 2, stop, "test")
    assert stop.is_set() and len(started) < 10


def test_wrong_s3_keys_give_a_user_error_with_the_fix(s3_settings, monkeypatch, tmp_path):
    from cloudlora import settings as settings_mod
    from cloudlora.assets import models
    from cloudlora.errors import UserError

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = open_store(settings_mod.resolve())
    # Every call says the same: the keys are wrong for that server. Never the IAM console or user-policy.json, which
    # are AWS's (a HEAD gets a bare 403, which used to read as a missing IAM permission).
    for call in (lambda: models.list_models(store), lambda: store.get_bytes("models/x/manifest.json"),
                 lambda: store.head("models/x/manifest.json"), lambda: store.put_bytes("models/x/a", b"a")):
        with pytest.raises(UserError) as err:
            call()
        assert f"S3-compatible server at {store.endpoint} refused" in err.value.message
        assert "access key or secret is wrong" in err.value.message
        assert "AWS_SECRET_ACCESS_KEY" in err.value.fix and "user-policy" not in err.value.fix
        assert "IAM console" not in err.value.fix


def test_with_checksums_turned_off_a_resumed_multipart_upload_still_completes(s3_server, s3_settings, monkeypatch,
                                                                               tmp_path):
    import threading

    from cloudlora import settings as settings_mod

    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")  # what R2 users set
    store = open_store(settings_mod.resolve())
    assert store.client.meta.config.request_checksum_calculation == "when_required"
    src = tmp_path / "nocrc.bin"
    src.write_bytes(os.urandom(24 << 20))
    cancel = threading.Event()
    with pytest.raises(transfer.Cancelled):
        transfer.upload_file(store, "models/n/nocrc.bin", src, part_size=8 << 20, threads=1, cancel=cancel,
                             progress=lambda p: cancel.set() if p.phase == "uploading" and p.done else None)
    result = transfer.upload_file(store, "models/n/nocrc.bin", src, part_size=8 << 20)
    assert result.resumed and 0 < result.bytes_sent < src.stat().st_size
    back = tmp_path / "back"
    store.download("models/n/nocrc.bin", back)
    assert back.read_bytes() == src.read_bytes()


def test_the_test_s3_server_has_room_for_every_bucket_of_a_run_however_full_the_disk(s3_server):
    """Each test's store is a bucket of its own, and SeaweedFS gives every bucket volumes of its own. Left to itself it
    allows free disk / 128 MB volumes, so on a fuller CI disk the later buckets of a run failed with InternalError
    ("no free volumes left"); the fixture sets the room instead."""
    import json
    import urllib.request

    from tests.webui.fixtures.s3 import VOLUMES

    with urllib.request.urlopen(s3_server.master + "/dir/status", timeout=10) as answer:
        topology = json.load(answer)["Topology"]
    assert topology["Max"] == VOLUMES >= 500
