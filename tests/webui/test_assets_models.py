"""Checkpoints: family from the header, dedupe by SHA-256, a killed upload resumes with only the missing parts,
and the CLI's exit codes."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cloudlora.assets import models
from cloudlora.cli import main as cli
from cloudlora.errors import UserError
from cloudlora.store import LocalStore, open_store
from tests.webui.test_assets_family import SD15, SDXL, write_safetensors

ROOT = Path(__file__).resolve().parents[2]


def checkpoint(path: Path, shapes=SD15, extra_mib: int = 0) -> Path:
    """A checkpoint with the family's key names (tiny tensors) plus `extra_mib` MiB of random padding."""
    shapes = {k: (8, 4) for k in shapes}
    if extra_mib:
        shapes["model.diffusion_model.padding"] = (extra_mib, 1 << 19)  # float16: extra_mib MiB
    write_safetensors(path, shapes)
    if extra_mib:  # random bytes, so that parts differ
        with open(path, "r+b") as f:
            f.seek(-extra_mib * (1 << 20), os.SEEK_END)
            f.write(os.urandom(extra_mib * (1 << 20)))
    return path


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return open_store(request.getfixturevalue("s3_settings"))


def test_an_uploaded_checkpoint_lists_with_its_family_and_a_second_upload_sends_0_bytes(store, tmp_path):
    path = checkpoint(tmp_path / "My Model v1.safetensors", SDXL, extra_mib=20)
    first = models.upload_model(store, path)
    assert (first["name"], first["family"], first["bytes_sent"]) == ("My_Model_v1", "sdxl", path.stat().st_size)
    assert first["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    listed = models.list_models(store)
    assert [(m["name"], m["family"], m["size"], m["file"]) for m in listed] == \
        [("My_Model_v1", "sdxl", path.stat().st_size, "models/My_Model_v1/My Model v1.safetensors")]
    started = time.monotonic()
    second = models.upload_model(store, path, name="another-name")
    assert second["deduplicated"] and second["bytes_sent"] == 0 and second["name"] == "My_Model_v1"
    assert time.monotonic() - started < 5  # the hash is cached: no re-hashing
    assert len(models.list_models(store)) == 1
    back = models.download_model(store, "My_Model_v1", tmp_path / "back")
    assert back.read_bytes() == path.read_bytes()
    assert models.delete_model(store, "My_Model_v1") >= 2
    assert models.list_models(store) == [] and list(store.list("models/")) == []


def test_a_pickle_checkpoint_needs_its_family_and_is_never_unpickled(tmp_path):
    ckpt = tmp_path / "old.ckpt"
    ckpt.write_bytes(b"\x80\x02cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    store = LocalStore(tmp_path / "store")
    with pytest.raises(UserError, match="pickle") as err:
        models.upload_model(store, ckpt)
    assert "--family" in err.value.fix
    manifest = models.upload_model(store, ckpt, family="sd15")
    assert manifest["family"] == "sd15" and not (tmp_path / "pwned").exists()


def test_a_family_that_contradicts_the_header_or_an_unknown_file_is_refused(tmp_path):
    store = LocalStore(tmp_path / "store")
    path = checkpoint(tmp_path / "xl.safetensors", SDXL)
    with pytest.raises(UserError, match="is SDXL by its tensor names"):
        models.upload_model(store, path, family="sd15")
    lora = tmp_path / "lora.safetensors"
    write_safetensors(lora, {"lora_unet_x.lora_down.weight": (4, 8)})
    with pytest.raises(UserError, match="could not be told"):
        models.upload_model(store, lora)
    with pytest.raises(UserError, match="not a checkpoint file"):
        models.family_of(tmp_path / "notes.txt")
    assert list(store.list("")) == []


def test_the_tiny_test_models_detect_as_their_family(tiny_sd15, tiny_sdxl):
    assert models.family_of(tiny_sd15) == "sd15"
    assert models.family_of(tiny_sdxl) == "sdxl"


KILLABLE = textwrap.dedent("""
    import sys, time
    from cloudlora import settings
    from cloudlora.assets import models
    from cloudlora.store import open_store

    def slow(p):  # paces the upload so that the test can kill it half way
        if p.phase == "uploading":
            time.sleep(0.4)

    models.upload_model(open_store(settings.resolve()), sys.argv[1], progress=slow)
""")


def test_a_killed_upload_resumes_and_sends_only_the_missing_parts(s3_settings, s3_server, tmp_path):
    path = checkpoint(tmp_path / "big.safetensors", SD15, extra_mib=80)
    size = path.stat().st_size
    env = {**os.environ, "CLOUDLORA_UPLOAD_THREADS": "2", "CLOUDLORA_PART_SIZE_MIB": "8"}
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(path)], env=env, cwd=ROOT)
    client, bucket = s3_server.client(), s3_settings.bucket
    deadline = time.monotonic() + 60
    parts = []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            if uploads:
                parts = client.list_parts(Bucket=bucket, Key=uploads[0]["Key"],
                                          UploadId=uploads[0]["UploadId"]).get("Parts", [])
                if len(parts) >= 3:
                    break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert len(parts) >= 3, "the upload never got half way"
    uploads = client.list_multipart_uploads(Bucket=bucket)["Uploads"]

    def stored_parts():
        return client.list_parts(Bucket=bucket, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"])["Parts"]

    kept, previous = stored_parts(), None
    while kept != previous:  # a part whose bytes were all sent before the kill may still land on the server
        time.sleep(0.5)
        previous, kept = kept, stored_parts()
    total_parts = -(-size // (8 << 20))
    assert 3 <= len(kept) < total_parts
    store = open_store(s3_settings)
    assert models.list_models(store) == []  # killed: not listed

    result = models.upload_model(store, path)
    assert result["bytes_sent"] == size - sum(p["Size"] for p in kept)
    assert result["bytes_sent"] < size
    back = models.download_model(store, result["name"], tmp_path / "back")
    assert hashlib.sha256(back.read_bytes()).hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest() \
        == result["sha256"]
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exit_codes_and_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    model = checkpoint(tmp_path / "m.safetensors")
    code, out, _ = run_cli(capsys, "model", "upload", str(model), "--json")
    assert code == 0 and json.loads(out)["family"] == "sd15"
    code, out, _ = run_cli(capsys, "model", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and [m["name"] for m in listed["models"]] == ["m"] and listed["total_bytes"] > 0
    code, out, _ = run_cli(capsys, "model", "list")
    assert code == 0 and "1 model(s)" in out and "sd15" in out
    ckpt = tmp_path / "old.ckpt"
    ckpt.write_bytes(b"\x80\x02}.")
    code, _, err = run_cli(capsys, "model", "upload", str(ckpt))
    assert code == 1 and "--family" in err
    with pytest.raises(SystemExit) as usage:
        cli(["model", "upload", str(model), "--family", "sd9"])
    assert usage.value.code == 2
    code, out, _ = run_cli(capsys, "model", "download", "m", str(tmp_path / "back"), "--json")
    assert code == 0 and Path(json.loads(out)["path"]).read_bytes() == model.read_bytes()
    code, _, err = run_cli(capsys, "model", "rm", "m")  # no terminal, no --yes: nothing deleted
    assert code == 1 and "--yes" in err
    code, _, _ = run_cli(capsys, "model", "rm", "m", "--yes")
    assert code == 0
    code, _, err = run_cli(capsys, "model", "rm", "m", "--yes")
    assert code == 1 and "No model named 'm'" in err

    good = tmp_path / "ds" / "10_cat"
    from tests.webui.test_assets_datasets import good_dataset, png

    good_dataset(tmp_path / "ds", n=2, trigger="cat")
    code, out, _ = run_cli(capsys, "dataset", "check", str(good.parent), "--json")
    assert code == 0 and json.loads(out)["summary"]["images_per_epoch"] == 20
    png(tmp_path / "bad" / "cats" / "1.png")
    code, out, _ = run_cli(capsys, "dataset", "check", str(tmp_path / "bad"))
    assert code == 1 and "cats" in out and "bad-folder-name" not in out and "<repeats>_<trigger>" in out
    code, _, err = run_cli(capsys, "dataset", "upload", str(tmp_path / "bad"))
    assert code == 1 and "nothing was uploaded" in err
    code, out, _ = run_cli(capsys, "dataset", "upload", str(good.parent), "--name", "cats")
    assert code == 0 and "Uploaded dataset 'cats'" in out
    code, out, _ = run_cli(capsys, "dataset", "list", "--json")
    assert code == 0 and [d["name"] for d in json.loads(out)["datasets"]] == ["cats"]
    code, _, _ = run_cli(capsys, "dataset", "rm", "cats", "--yes")
    code2, out, _ = run_cli(capsys, "dataset", "list")
    assert code == 0 and code2 == 0 and "No datasets" in out


def test_a_half_uploaded_dataset_is_not_listed_but_rm_clears_its_files(tmp_path, capsys, monkeypatch):
    from cloudlora.assets.datasets import manifest_key
    from cloudlora.store import LocalStore
    from tests.webui.test_assets_datasets import good_dataset

    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    good_dataset(tmp_path / "ds", n=2, trigger="cat")
    assert run_cli(capsys, "dataset", "upload", str(tmp_path / "ds"), "--name", "cats")[0] == 0
    store = LocalStore(tmp_path / "store")
    store.delete(manifest_key("cats"))  # what an interrupted upload leaves: files, no manifest (it is written last)
    code, out, _ = run_cli(capsys, "dataset", "list")
    assert code == 0 and "No datasets" in out
    code, _, err = run_cli(capsys, "dataset", "rm", "cats")  # no terminal, no --yes: nothing deleted
    assert code == 1 and "half-uploaded" in err and list(store.list("datasets/cats/"))
    code, out, _ = run_cli(capsys, "dataset", "rm", "cats", "--yes")
    assert code == 0 and not list(store.list("datasets/cats/"))
    code, _, err = run_cli(capsys, "dataset", "rm", "cats", "--yes")
    assert code == 1 and "No dataset named 'cats'" in err
