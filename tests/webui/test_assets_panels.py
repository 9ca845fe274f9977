"""The panels' handlers without a browser: picking a WebUI checkpoint, the three dataset sources, polling progress."""
from __future__ import annotations

import io
import types
import zipfile
from pathlib import Path

from PIL import Image

from cloudlora import host
from cloudlora.assets import datasets, models
from cloudlora import settings
from cloudlora.store import open_store
from cloudlora.ui import checkpoints_panel, datasets_panel
from tests.webui.test_assets_datasets import good_dataset, png
from tests.webui.test_assets_family import SDXL, write_safetensors


def test_a_webui_checkpoint_is_picked_by_title_and_uploaded_in_the_background(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    ckpt = write_safetensors(tmp_path / "sd_xl_base.safetensors", {k: (8, 4) for k in SDXL})
    refreshed = []

    def list_checkpoints(refresh):
        refreshed.append(refresh)
        return [("sd_xl_base.safetensors [abc123]", str(ckpt))]

    monkeypatch.setattr(host, "_current", host.Host(name="a1111", list_checkpoints=list_checkpoints))
    outputs = list(checkpoints_panel.upload("sd_xl_base.safetensors [abc123]", "", checkpoints_panel.FAMILY_CHOICES[0],
                                            ""))
    html, task_id = outputs[-1]
    assert "Uploaded 'sd_xl_base' (sdxl" in html and task_id
    assert [m["name"] for m in models.list_models(open_store(settings.resolve()))] == ["sd_xl_base"]
    rows, total = checkpoints_panel.model_rows()
    assert rows[0][:2] == ["sd_xl_base", "sdxl"] and "1 model(s)" in total
    again = list(checkpoints_panel.upload("sd_xl_base.safetensors [abc123]", "", "sdxl", "other"))[-1][0]
    assert "0 bytes sent" in again
    bad = list(checkpoints_panel.upload("", "", checkpoints_panel.FAMILY_CHOICES[0], ""))[-1][0]
    assert "Pick a checkpoint" in bad


def test_the_three_dataset_sources_validate_into_a_report_and_a_gallery(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    root = good_dataset(tmp_path / "folder", n=2)
    report, gallery, got_root, paths, name = datasets_panel.validate(datasets_panel.SOURCES[0], str(root), None,
                                                                      None, "", 10)
    assert "Ready to upload" in report and len(gallery) == 2 and got_root == str(root) and name == "folder"

    buf = tmp_path / "z.zip"
    with zipfile.ZipFile(buf, "w") as zf:
        img = io.BytesIO()
        Image.new("RGB", (300, 300)).save(img, "PNG")
        zf.writestr("5_zz/1.png", img.getvalue())
    uploaded = types.SimpleNamespace(name=str(buf))  # what gr.File gives in 3.41
    report, gallery, zroot, _paths, _name = datasets_panel.validate(datasets_panel.SOURCES[1], "", uploaded, None,
                                                                     "", 10)
    assert "1 images" in report and len(gallery) == 1
    assert datasets_panel.validate(datasets_panel.SOURCES[1], "", uploaded, None, "", 10)[2] == zroot  # once

    a = png(tmp_path / "drop" / "a.png")
    report, gallery, droot, _paths, _name = datasets_panel.validate(datasets_panel.SOURCES[2], "", None,
                                                                     [str(a)], "sks", 7)
    assert "7 images × repeats per epoch" in report.replace("<b>", "").replace("</b>", "")
    report, *_ = datasets_panel.validate(datasets_panel.SOURCES[2], "", None, [str(a)], "", 7)
    assert "cannot be a trigger word" in report

    html, task_id = list(datasets_panel.upload(got_root, "faces"))[-1]
    assert "Uploaded dataset 'faces'" in html
    assert [d["name"] for d in datasets.list_datasets(open_store(settings.resolve()))] == ["faces"]


def test_prepare_and_auto_caption_from_the_panel_work_on_copies_and_captions(tmp_path, monkeypatch):
    root = good_dataset(tmp_path / "folder", n=1)
    png(root / "10_demo" / "big.png", size=(1600, 1200))
    *_, (message, new_root) = list(datasets_panel.prepare(str(root), "sd15"))
    assert "originals are unchanged" in message and new_root != str(root)
    with Image.open(f"{new_root}/10_demo/big.png") as img:
        assert img.size[0] * img.size[1] <= 512 * 512 * 1.1
    with Image.open(root / "10_demo" / "big.png") as img:
        assert img.size == (1600, 1200)

    monkeypatch.setattr(host, "_current", host.Host(name="a1111", interrogate=lambda image: "a big square"))
    message = list(datasets_panel.autocaption(new_root))[-1]
    assert "Captioned 1 image(s)" in message
    assert Path(new_root, "10_demo", "big.txt").read_text(encoding="utf-8").strip() == "demo, a big square"


def test_a_dataset_renamed_on_a_real_collision_is_said_in_the_tab_the_cli_and_rest(tmp_path, monkeypatch, capsys,
                                                                                 api_client):
    """NAME-2: a name nobody typed that another dataset's content holds already; each surface says so."""
    from fastapi import FastAPI

    from cloudlora import api
    from cloudlora.cli import main as cli
    from tests.webui.test_assets_api import wait_task

    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    first = good_dataset(tmp_path / "a" / "pets", n=2)
    html, _ = list(datasets_panel.upload(str(first), ""))[-1]
    assert "Uploaded dataset 'pets'" in html and "already in the store" not in html
    html, _ = list(datasets_panel.upload(str(good_dataset(tmp_path / "b" / "pets", n=3)), ""))[-1]
    assert "'pets-2'" in html and "A dataset named 'pets' with other content" in html

    assert cli(["dataset", "upload", str(good_dataset(tmp_path / "c" / "pets", n=4))]) == 0
    said = capsys.readouterr()
    assert "'pets-3'" in said.out and "A dataset named 'pets' with other content" in said.err

    app = FastAPI()
    api.mount(app, None)
    client = api_client(app)
    r = client.post("/cloudlora/v1/datasets/upload", json={"path": str(good_dataset(tmp_path / "d" / "pets", n=5))})
    done = wait_task(client, f"/cloudlora/v1/datasets/tasks/{r.json()['task_id']}")
    assert done["result"]["name"] == "pets-4" and "'pets'" in done["result"]["rename_note"]
