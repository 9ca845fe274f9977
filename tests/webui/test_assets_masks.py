"""Masked loss with mask images: a `mask/` folder inside a <repeats>_<trigger> folder travels with the dataset (the
trainer reads it with conditioning_data_dir = "mask"), without the check calling it a stray folder."""
from __future__ import annotations

from PIL import Image

from cloudlora.assets.dataset_check import check_dataset
from cloudlora.assets.datasets import upload_dataset
from cloudlora.store import open_store


def test_mask_images_are_uploaded_with_their_images_and_not_reported_as_a_stray_folder(tmp_path, monkeypatch):
    from cloudlora import settings

    data = tmp_path / "data" / "5_sks"
    (data / "mask").mkdir(parents=True)
    for name in ("01", "02"):
        Image.new("RGB", (64, 64), (200, 80, 40)).save(data / f"{name}.png")
        (data / f"{name}.txt").write_text("sks, a shape")
        Image.new("L", (64, 64), 255).save(data / "mask" / f"{name}.png")
    (data / "other").mkdir()  # any other sub-folder is still reported
    report = check_dataset(tmp_path / "data")
    codes = {(i.code, i.path) for i in report.findings}
    assert ("nested-folder", "5_sks/other") in codes
    assert not any(path.startswith("5_sks/mask") for _, path in codes)
    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    store = open_store(settings.resolve())
    upload_dataset(store, tmp_path / "data", name="masked")
    keys = sorted(o.key for o in store.list("datasets/masked/"))
    assert "datasets/masked/5_sks/mask/01.png" in keys and "datasets/masked/5_sks/mask/02.png" in keys
