"""Files on disk: the data folder, the settings and the local store (the user's photos) are the user's alone, even
under the usual umask 022; a LoRA put into the Lora folder is readable like the WebUI's other models."""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from cloudlora import settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask():
    old = os.umask(0o022)  # what most desktops use: new files 0644, folders 0755
    yield
    os.umask(old)


def _group_or_world_readable(root: Path) -> list[str]:
    return [f"{p} {oct(_mode(p))}" for p in [root, *root.rglob("*")] if not p.is_symlink() and _mode(p) & 0o077]


def test_the_settings_file_and_its_folder_are_private(isolated_settings):
    path = settings.save({"region": "eu-west-1"})
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700


def test_the_hash_cache_listing_every_hashed_path_is_private(tmp_path):
    from cloudlora.assets import hashcache

    photo = tmp_path / "photo.png"
    photo.write_bytes(b"not really a png")
    hashcache.sha256_file(photo)
    assert _mode(hashcache.cache_file()) == 0o600
    assert _mode(settings.data_dir()) == 0o700


def test_a_data_folder_an_older_version_left_world_readable_is_tightened(isolated_settings):
    data = isolated_settings / "data"
    data.mkdir(mode=0o755)
    assert _mode(data) == 0o755
    assert settings.data_dir() == data
    assert _mode(data) == 0o700


def test_locks_are_private(isolated_settings):
    from cloudlora.jobs import records

    with records.lock("create-x"):
        pass
    (lock,) = (settings.data_dir() / "locks").glob("*.lock")
    assert _mode(lock) == 0o600


def test_the_local_store_with_the_training_photos_is_private_to_the_user(tmp_path, monkeypatch, sample_dataset):
    from cloudlora.assets.datasets import upload_dataset
    from cloudlora.store import open_store

    store_dir = tmp_path / "store"
    monkeypatch.setenv("CLOUDLORA_STORE", str(store_dir))
    upload_dataset(open_store(settings.resolve()), sample_dataset, name="demo")
    assert _mode(store_dir) == 0o700
    files = [p for p in store_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".png" for p in files) and any(p.name == "manifest.json" for p in files)
    assert {oct(_mode(p)) for p in files} == {"0o600"}, [f"{p} {oct(_mode(p))}" for p in files if _mode(p) != 0o600]


def test_a_local_job_writes_privately_but_the_pulled_lora_is_readable_like_the_other_models(job_env, fake_trainer):
    from cloudlora.jobs import service
    from cloudlora.jobs.spec import JobSpec

    fake_trainer(steps=2, delay=0.05)
    job = service.create_job(JobSpec(model=job_env.model, dataset=job_env.dataset, family="sd15",
                                     config=service.default_config("sd15"), lora_name="private_job"))
    deadline = time.monotonic() + 60
    while service.get_job(job["id"])["status"] != "Completed" and time.monotonic() < deadline:
        time.sleep(0.2)
    jobdir = job_env.store_dir / "jobs" / job["id"]
    assert (jobdir / "model" / "private_job.safetensors").exists()
    assert _group_or_world_readable(job_env.store_dir) == []
    lora = job_env.lora_dir / "private_job.safetensors"
    assert service.get_job(job["id"])["pulled"] == [str(lora)]
    # the mode the WebUI's own downloads get under this umask, not the job folder's 0600
    for p in (lora, lora.with_suffix(".json"), lora.with_name("private_job.preview.png")):
        assert _mode(p) == 0o644, p
