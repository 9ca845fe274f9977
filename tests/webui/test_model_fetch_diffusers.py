"""`model fetch org/repo` of a full diffusers folder repo (model_index.json at the top, no single-file checkpoint):
the files a pipeline needs (no .bin/ONNX/Flax/fp16 duplicates, no root .ckpt), each resumable and checked against
the hub's sha256, one progress over the total, into models/diffusers/<repo name>; then the family from its configs
and the upload as one model. Against the hub-like server on 127.0.0.1 (never the internet)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from cloudlora import host
from cloudlora.assets import model_fetch, models
from tests.webui.conftest import TINY_CACHE
from tests.webui.test_model_fetch import store

import pytest

REPO = "org/tiny-diffusers"


@pytest.fixture(scope="session")
def tiny_sd15_folder(trainer_python, tiny_sd15) -> Path:
    """The tiny SD 1.5 model saved as a diffusers folder (StableDiffusionPipeline.save_pretrained), built once."""
    out = TINY_CACHE / "tiny-sd15-diffusers"
    if not (out / "model_index.json").is_file():
        code = ("import sys; from cloudlora_backend.trainer.model.load import build_pipeline, load_components; "
                "build_pipeline(load_components(sys.argv[1])).save_pretrained(sys.argv[2])")
        subprocess.run([trainer_python, "-c", code, str(tiny_sd15), str(out)], check=True, capture_output=True)
    return out


def hub_files(folder: Path) -> tuple[dict[str, bytes], set[str]]:
    """The repo as the hub would hold it (the folder plus the duplicates real repos carry) and the names a fetch
    must bring (the text encoder only as fp16: it comes, under the plain name)."""
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    wanted = set(files)
    te = files.pop("text_encoder/model.safetensors")
    files["text_encoder/model.fp16.safetensors"] = te
    files.update({
        "unet/diffusion_pytorch_model.fp16.safetensors": b"half" * 1000,
        "unet/diffusion_pytorch_model.bin": b"pickle" * 1000,
        "vae/diffusion_pytorch_model.fp16.safetensors": b"half" * 500,
        "text_encoder/flax_model.msgpack": b"flax" * 500,
        "onnx/unet/model.onnx": b"onnx" * 500,
        "v1-5-pruned.ckpt": b"ckpt" * 500,
        "README.md": b"# tiny",
    })
    return files, wanted


def test_a_diffusers_folder_repo_comes_whole_checked_and_is_uploaded_as_one_model(
        hub_server, tiny_sd15_folder, tmp_path, monkeypatch):
    files, wanted = hub_files(tiny_sd15_folder)
    hub_server.add(REPO, files)
    models_root = tmp_path / "webui" / "models"
    monkeypatch.setattr(host, "_current", host.Host(name="a1111", checkpoint_dir=lambda: models_root /
                                                    "Stable-diffusion"))
    events = []
    result = model_fetch.fetch_model(store(tmp_path), REPO, progress=events.append)
    folder = models_root / "diffusers" / "tiny-diffusers"
    assert Path(result["path"]) == folder and result["format"] == "diffusers"
    assert result["family"] == "sd15" and result["sha256_checked"] and result["name"] == "tiny-diffusers"
    got = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert got == wanted  # no duplicate, no leftover .part
    assert (folder / "text_encoder/model.safetensors").read_bytes() == files["text_encoder/model.fp16.safetensors"]
    asked = {e["path"].split("/resolve/main/", 1)[1] for e in hub_server.log if "/resolve/" in e["path"]}
    assert asked == (wanted - {"text_encoder/model.safetensors"}) | {"text_encoder/model.fp16.safetensors"}
    assert not (models_root / "Stable-diffusion").exists()  # never listed as checkpoints by the WebUI
    # one progress over the whole folder
    total = sum(len(files[n]) for n in asked if n != "model_index.json")
    over = [e for e in events if e.files_total]  # the download's (the upload reports after it)
    assert over[-1].total == total and over[-1].done == total and over[-1].files_done == len(asked) - 1
    assert {e.total for e in over} == {total} and over[-1].phase == "downloaded"
    dones = [e.done for e in over]
    assert dones == sorted(dones)
    # in the store: one model, the folder's files under its prefix, listed with its family
    manifest = models.get_model(store(tmp_path), "tiny-diffusers")
    assert manifest["format"] == "diffusers" and manifest["family"] == "sd15"
    assert manifest["file"] == "models/tiny-diffusers/tiny-diffusers" and manifest["file_count"] == len(wanted)
    keys = {o.key for o in store(tmp_path).list("models/tiny-diffusers/tiny-diffusers/")}
    assert keys == {f"models/tiny-diffusers/tiny-diffusers/{n}" for n in wanted}
    # again: nothing downloaded, the store already has it
    hub_server.log.clear()
    again = model_fetch.fetch_model(store(tmp_path), REPO)
    assert again["already_downloaded"] and again["downloaded_bytes"] == 0 and again["deduplicated"]
    assert not hub_server.file_requests()


def test_a_killed_folder_download_resumes_with_only_the_missing_bytes(hub_server, tiny_sd15_folder, tmp_path):
    files, wanted = hub_files(tiny_sd15_folder)
    hub_server.add(REPO, files)
    hub_server.delay = 0.02  # ~3 MiB/s: the kill comes part-way through the folder
    dest = tmp_path / "dl"
    cmd = [sys.executable, "-m", "cloudlora", "model", "fetch", REPO, "--dest", str(dest), "--no-upload", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done_files = [p for p in dest.rglob("*.safetensors")] if dest.exists() else []
        parts = list(dest.rglob(".cloudlora-fetch-*.part")) if dest.exists() else []
        if done_files and parts and parts[0].stat().st_size > 1 << 20:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    folder = dest / "tiny-diffusers"
    have = sum(p.stat().st_size for p in folder.rglob("*")  # finished files and the cut .part, not its .json
               if p.is_file() and not (p.name.startswith(".cloudlora-fetch-") and p.suffix == ".json"))
    total = sum(len(files[n]) for n in wanted if n in files) + len(files["text_encoder/model.fp16.safetensors"])
    assert 0 < have < total
    hub_server.log.clear()
    hub_server.delay = 0
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["format"] == "diffusers" and out["sha256_checked"] and out["family"] == "sd15"
    sent = sum(e["sent"] for e in hub_server.file_requests())
    assert sent == total - have and out["downloaded_bytes"] == total - have and out["resumed_from"] == have
    assert any(e["status"] == 206 for e in hub_server.file_requests())  # the cut file resumed with Range
    for name in wanted:
        remote = files.get(name, files.get("text_encoder/model.fp16.safetensors"))
        assert (folder / name).read_bytes() == remote, name


def small_folder(root: Path) -> Path:
    """A diffusers-shaped SD 1.5 folder of small files (the family comes from the configs alone)."""
    files = {"model_index.json": json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "U"]}),
             "unet/config.json": json.dumps({"cross_attention_dim": 768}),
             "unet/diffusion_pytorch_model.safetensors": "w" * 3000, "vae/config.json": "{}"}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_a_folder_model_in_an_s3_store_comes_back_whole_for_a_local_job_and_model_download(s3_store, tmp_path):
    from cloudlora.assets import model_folder
    from cloudlora.cli import main as cli

    folder = small_folder(tmp_path / "my-model")
    up = model_folder.upload_folder(s3_store, folder)
    assert up["format"] == "diffusers" and up["family"] == "sd15" and up["file"] == "models/my-model/my-model"
    # what the local backend does with the model key of an S3 store: download it into the job's model channel
    seen = []
    s3_store.download(up["file"], tmp_path / "job" / "my-model", progress=lambda d, t: seen.append((d, t)))
    for p in folder.rglob("*"):
        if p.is_file():
            assert (tmp_path / "job" / "my-model" / p.relative_to(folder)).read_bytes() == p.read_bytes()
    assert seen[-1][0] == seen[-1][1] == up["size"]
    assert model_folder.upload_folder(s3_store, folder)["deduplicated"]
    # `cloudlora model download NAME DIR` brings the folder
    assert cli(["model", "download", "my-model", str(tmp_path / "back")]) == 0
    assert (tmp_path / "back" / "my-model" / "unet" / "config.json").is_file()


def test_a_diffusers_folder_model_trains_in_a_local_job(tmp_path, monkeypatch, tiny_sd15_folder, sample_dataset,
                                                        trainer_python):
    """What a fetched folder is for: the store links it into the job's model channel and the trainer loads it."""
    import os

    from cloudlora import settings
    from cloudlora.assets import model_folder
    from cloudlora.store import open_store
    from tests.webui.test_jobs_end_to_end import FAST

    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("CLOUDLORA_LORA_DIR", str(tmp_path / "Lora"))
    monkeypatch.setenv("CLOUDLORA_TRAINER_PYTHON", trainer_python)
    model_folder.upload_folder(open_store(settings.resolve()), tiny_sd15_folder, name="tiny-folder")
    cmd = [sys.executable, "-m", "cloudlora", "train", "--model", "tiny-folder", "--dataset", str(sample_dataset),
           "--backend", "local", "--name", "folder_e2e", "--wait", "--json", *FAST]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert run.returncode == 0, run.stdout + run.stderr
    job = json.loads(run.stdout)
    assert job["status"] == "Completed" and job["step"] == 2
    assert (tmp_path / "Lora" / "folder_e2e.safetensors").is_file()


def test_a_folder_that_does_not_fit_on_the_disk_is_said_before_its_weights_download(hub_server, tiny_sd15_folder,
                                                                                     tmp_path, monkeypatch):
    from cloudlora.assets import resumable_download
    from cloudlora.errors import UserError

    files, _ = hub_files(tiny_sd15_folder)
    hub_server.add(REPO, files)
    monkeypatch.setattr(resumable_download, "free_space", lambda folder: 80 << 20)  # the margin (64 MiB) + less than the folder
    with pytest.raises(UserError, match=f"Downloading {REPO}: not enough disk space") as full:
        model_fetch.fetch_model(None, REPO, dest_dir=tmp_path / "d", upload=False)
    assert "Free some space" in full.value.fix
    assert all(e["sent"] < 10_000 for e in hub_server.file_requests())  # model_index.json only, no weights
