"""Story: a user with no GPU asks the cloud job to caption the photos first (`caption = "wd14"`): the captioner goes
to the job once through the store, and the captions the job wrote come back as the dataset's new version and next
to the local copy, without overwriting a caption the user changed meanwhile. Locally the same job captions on this
machine, with the real trainer and a tiny WD14 tagger."""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import boto3
import pytest

from cloudlora import bootstrap
from cloudlora.jobs import service
from cloudlora.jobs.sagemaker_backend import sagemaker
from cloudlora.jobs.spec import JobSpec
from tests.webui.test_jobs_sagemaker import ROLE, IMAGE, _capture_create

CAPTION_CONFIG = 'caption = "wd14"\ncaption_mode = "append"\n'


def _fake_captioner(data_dir: Path) -> Path:
    """A captioner already downloaded (the download itself: tests/webui/test_captions_cli.py)."""
    folder = data_dir / "captioners" / "wd14"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx-bytes")
    (folder / "selected_tags.csv").write_text("tag_id,name,category,count\n1,1girl,0,1\n", encoding="utf-8")
    (folder / ".cloudlora-complete").write_text("{}", encoding="utf-8")
    return folder


@pytest.fixture
def cloud_user(aws_env, monkeypatch, tiny_sd15, sample_dataset, tmp_path):
    """A SageMaker user (moto) with the tiny model and their own copy of the sample dataset uploaded as 'mine'."""
    from cloudlora import settings
    from cloudlora.assets.datasets import upload_dataset
    from cloudlora.assets.models import upload_model
    from cloudlora.store import open_store

    boto3.client("s3", region_name=aws_env.region).create_bucket(Bucket="cloudlora-store")
    monkeypatch.setenv("CLOUDLORA_BUCKET", "cloudlora-store")
    monkeypatch.setenv("CLOUDLORA_ROLE_ARN", ROLE)
    monkeypatch.setenv("CLOUDLORA_IMAGE_URI", IMAGE)
    monkeypatch.setenv("CLOUDLORA_LORA_DIR", str(tmp_path / "Lora"))
    s = settings.resolve()
    store = open_store(s)
    upload_model(store, tiny_sd15, name="tiny-sd15")
    mine = tmp_path / "photos"
    shutil.copytree(sample_dataset, mine)
    (mine / "10_cldemo" / "01.txt").unlink()  # one photo has no caption yet
    upload_dataset(store, mine, name="mine")
    return s, store, mine


def _spec(**kw) -> JobSpec:
    base = dict(model="tiny-sd15", dataset="mine", family="sd15",
                config=CAPTION_CONFIG + service.default_config("sd15"), lora_name="mine_lora", backend="sagemaker",
                instance_type="ml.g5.2xlarge", spot=False, max_runtime_s=3600, client_token="cap-1")
    base.update(kw)
    return JobSpec(**base)


def test_a_captioning_cloud_job_reads_the_captioner_from_the_store_through_its_own_channel(cloud_user, monkeypatch):
    from cloudlora.assets.models import list_models
    from cloudlora.settings import data_dir

    s, store, _mine = cloud_user
    cached = _fake_captioner(data_dir())
    sent = _capture_create(monkeypatch)
    job = service.create_job(_spec(), s)
    assert job["created"] and len(sent) == 1
    channels = {c["ChannelName"]: c for c in sent[0]["InputDataConfig"]}
    assert channels["captioner"]["DataSource"]["S3DataSource"]["S3Uri"] == \
        "s3://cloudlora-store/models/_captioners/wd14/"
    assert sent[0]["EnableNetworkIsolation"] is True  # the container downloads nothing itself
    assert store.get_bytes("models/_captioners/wd14/model.onnx") == (cached / "model.onnx").read_bytes()
    assert not list(store.list("models/_captioners/wd14/.cloudlora"))  # the cache's marker stays home
    assert [m["name"] for m in list_models(store)] == ["tiny-sd15"]  # the captioner is no model of the user's

    plain = service.create_job(_spec(config=service.default_config("sd15"), client_token="cap-2"), s)
    assert plain["created"] and "captioner" not in {c["ChannelName"] for c in sent[1]["InputDataConfig"]}


def test_create_in_the_tab_says_it_is_sending_the_captioner_then_shows_the_cloud_job(cloud_user, monkeypatch):
    """The first captioning SageMaker job sends the captioner (and downloads it first) before the job exists: the
    Create message says so while it works, instead of a silent "Submitting…" for minutes."""
    from cloudlora.settings import data_dir
    from cloudlora.ui import train_form

    _fake_captioner(data_dir())
    sent = _capture_create(monkeypatch)
    label = next(i for i in train_form.instance_labels() if i.startswith("ml.g5.2xlarge"))
    answers = list(train_form.create_job_live(label, "SD 1.5", "tiny-sd15", "mine", "mine_lora",
                                              CAPTION_CONFIG + service.default_config("sd15"), False, 48, 24,
                                              "Cloud LoRA trainer image", "", "tab-live-1"))
    said = [a[0] for a in answers[:-1]]
    assert any("Sending the captioner to the store" in m for m in said), said
    assert all(m.startswith("⏳") and a[1:] == (train_form.gr.update(),) * 3 for m, a in zip(said, answers))
    message, token, selected, _config = answers[-1]
    assert not message.startswith("✗"), message
    assert len(sent) == 1 and selected["value"] == sent[0]["TrainingJobName"] and token != "tab-live-1"


def test_the_kohya_sample_container_cannot_caption_and_says_what_to_do(cloud_user):
    from cloudlora.errors import UserError

    s, _store, _mine = cloud_user
    with pytest.raises(UserError, match="cloudlora dataset caption"):
        service.create_job(_spec(container="kohya-sample", client_token="cap-3"), s)


def _model_tar(captions: dict[str, str]) -> bytes:
    header = json.dumps({"__metadata__": {"ss_output_name": "mine_lora", "ss_base_model_version": "sd_v1"},
                         "lora_unet_x.alpha": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}).encode()
    files = {"mine_lora.safetensors": struct.pack("<Q", len(header)) + header + b"\0" * 4,
             "captions/captions.json": json.dumps({"captioner": "wd14", "mode": "append",
                                                    "files": sorted(captions), "written": sorted(captions)}).encode()}
    files.update({f"captions/{rel}": text.encode() for rel, text in captions.items()})
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_the_captions_a_cloud_job_wrote_become_the_datasets_new_version_and_land_in_the_local_copy(
        cloud_user, monkeypatch):
    from cloudlora.assets.datasets import get_dataset
    from cloudlora.settings import data_dir

    s, store, mine = cloud_user
    _fake_captioner(data_dir())
    before = get_dataset(store, "mine")["sha256"]
    job = service.create_job(_spec(), s)
    # While it ran, the user rewrote one caption on this machine: that edit is theirs and stays.
    (mine / "10_cldemo" / "02.txt").write_text("cldemo, my own words", encoding="utf-8")
    # moto completes the job at once; put what the trainer's caption stage left in /opt/ml/model.
    uri = sagemaker.describe(s, job["id"])["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, key = sagemaker.parse_s3_uri(uri)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=_model_tar({
        "10_cldemo/01.txt": "cldemo, 1girl, red theme", "10_cldemo/02.txt": "cldemo, from the job"}))

    listed = service.list_jobs(s)  # sees it Completed: pulls it, and the captions with it
    assert listed[0]["status"] == "Completed" and listed[0]["pulled"]
    assert (mine / "10_cldemo" / "01.txt").read_text(encoding="utf-8").strip() == "cldemo, 1girl, red theme"
    assert (mine / "10_cldemo" / "02.txt").read_text(encoding="utf-8") == "cldemo, my own words"
    after = get_dataset(store, "mine")
    assert after["sha256"] != before and after["captions"] == 6
    assert store.get_bytes("datasets/mine/10_cldemo/01.txt").decode().strip() == "cldemo, 1girl, red theme"

    again = service.pull_job(job["id"], s)  # brought in once: a second pull changes nothing
    assert "captions" not in again and get_dataset(store, "mine")["sha256"] == after["sha256"]


def test_a_captions_index_naming_a_path_outside_the_dataset_writes_nothing(cloud_user, monkeypatch, tmp_path):
    from cloudlora.assets.datasets import get_dataset
    from cloudlora.settings import data_dir

    s, store, mine = cloud_user
    _fake_captioner(data_dir())
    before = get_dataset(store, "mine")["sha256"]
    job = service.create_job(_spec(client_token="cap-4"), s)
    uri = sagemaker.describe(s, job["id"])["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, key = sagemaker.parse_s3_uri(uri)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=_model_tar({"../escaped.txt": "pwned"}))
    pulled = service.pull_job(job["id"], s)
    assert "not brought into the dataset" in pulled["message"] and "not a caption file inside" in pulled["message"]
    assert not (mine.parent / "escaped.txt").exists() and get_dataset(store, "mine")["sha256"] == before


FAST = ["--set", "max_train_steps=2", "--set", "resolution=64", "--set", "min_bucket_reso=64",
        "--set", "max_bucket_reso=128", "--set", "sample_every_n_epochs=0"]


def test_a_local_job_captions_the_photos_first_and_brings_the_captions_home(tmp_path, monkeypatch, tiny_sd15,
                                                                           sample_dataset, trainer_python, hub_server):
    monkeypatch.setenv("CLOUDLORA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("CLOUDLORA_LORA_DIR", str(tmp_path / "Lora"))
    monkeypatch.setenv("CLOUDLORA_TRAINER_PYTHON", trainer_python)
    built = tmp_path / "tiny-wd14"
    code = "import sys; from cloudlora_backend.trainer.captions.tiny import make_tiny_wd14; make_tiny_wd14(sys.argv[1])"
    subprocess.run(bootstrap.command(trainer_python, "-c", code, str(built)), check=True)
    # The tagger is not on this machine yet: the job's runner downloads it (from a hub on 127.0.0.1) in the background.
    hub_server.add("SmilingWolf/wd-vit-tagger-v3", {n: (built / n).read_bytes() for n in ("model.onnx", "selected_tags.csv")})
    photos = tmp_path / "photos"
    shutil.copytree(sample_dataset, photos)
    for caption in photos.rglob("*.txt"):
        caption.unlink()  # a folder of photos with no captions

    cmd = [sys.executable, "-m", "cloudlora", "train", "--model", str(tiny_sd15), "--dataset", str(photos),
           "--backend", "local", "--name", "captioned", "--wait", "--json", "--set", "caption=wd14", *FAST]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert run.returncode == 0, run.stdout + run.stderr
    job = json.loads(run.stdout)
    assert job["status"] == "Completed" and job["pulled"]
    captions = sorted(photos.rglob("*.txt"))
    assert len(captions) == 6, "every photo has its caption now, beside it"
    texts = [c.read_text(encoding="utf-8") for c in captions]
    assert all(t.startswith("cldemo, ") and "1girl" in t for t in texts), texts  # the trigger word first
    from cloudlora.assets.datasets import get_dataset
    from cloudlora.store import LocalStore

    store = LocalStore(tmp_path / "store")
    name = job["dataset"]
    assert get_dataset(store, name)["captions"] == 6  # the store's version has them too
    assert store.get_bytes(f"datasets/{name}/10_cldemo/01.txt").decode() == (photos / "10_cldemo" / "01.txt").read_text()
    log = (tmp_path / "store" / "jobs" / job["id"] / "runner" / "train.log").read_text(encoding="utf-8")
    assert "Getting the captioner" in log and "to download once" in log and "captioner wd14 ready" in log


def test_the_train_forms_caption_field_turns_captioning_on_and_emptied_off_again():
    from cloudlora.jobs import job_captions
    from cloudlora.ui import train_form

    base = service.default_config("sd15")
    on, message = train_form.knob_outcome("caption", "wd14", base, "sd15")
    assert message == "" and job_captions.wanted(on) == "wd14"
    off, _ = train_form.knob_outcome("caption", "", on, "sd15")
    assert off is not None and job_captions.wanted(off) == ""
    bad, why = train_form.knob_outcome("caption", "blip", base, "sd15")
    assert bad is None and "caption" in why and "wd14" in why


def test_a_local_job_whose_captioner_cannot_be_downloaded_fails_saying_why_and_the_fix(
        tmp_path, monkeypatch, tiny_sd15, sample_dataset, trainer_python, hub_server):
    monkeypatch.setenv("CLOUDLORA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("CLOUDLORA_TRAINER_PYTHON", trainer_python)
    cmd = [sys.executable, "-m", "cloudlora", "train", "--model", str(tiny_sd15), "--dataset", str(sample_dataset),
           "--backend", "local", "--name", "nocap", "--wait", "--json", "--set", "caption=wd14", *FAST]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    job = json.loads(run.stdout)
    assert job["status"] == "Failed", job
    assert "SmilingWolf/wd-vit-tagger-v3" in job["failure"] and "Fix:" in job["failure"], job["failure"]
    assert not list((tmp_path / "data").rglob("*.onnx"))
