"""A dataset laid out wrongly, as new users lay them out: the check names the folder, the name it should have and
the images it saw; images lying loose in the folder are said as such, and wrapped (a copy) on request, in the CLI,
REST and the Datasets panel. "Prepare for" starts at the family of the user's model."""
from __future__ import annotations

import shutil
import time

import pytest
from playwright.sync_api import expect

from cloudlora import settings
from cloudlora.assets import models
from cloudlora.assets.dataset_check import check_dataset
from cloudlora.cli import main
from cloudlora.store import open_store
from cloudlora.ui import datasets_panel
from tests.webui.test_assets_datasets import png, text
from tests.webui.test_assets_family import SD15, SDXL, write_safetensors


def _photos(folder, n=6):
    for i in range(n):
        png(folder / f"{i}.png", color=(i * 40, 90, 160))
        text(folder / f"{i}.txt", f"cldemo, photo {i}")
    return folder


@pytest.mark.parametrize("name", ["cldemo", "cldemo_10", "10-cldemo"])
def test_a_badly_named_folder_is_named_with_the_name_it_needs_and_the_images_seen(tmp_path, name):
    _photos(tmp_path / "ds" / name)
    report = check_dataset(tmp_path / "ds")
    [error] = report.errors
    assert error.path == name and "none of the 6 image(s) it holds" in error.message
    assert "Rename it to 10_cldemo" in error.fix
    shown = report.text()
    assert "unreadable" not in shown and "images 0" not in shown
    assert "6 image(s) seen" in shown


def test_images_loose_in_the_folder_are_said_and_wrapped_into_a_copy_on_request(tmp_path, capsys):
    folder = _photos(tmp_path / "cldemo")
    [error] = check_dataset(folder).errors
    assert error.code == "images-in-root" and "6 image(s) lie directly in cldemo/" in error.message
    assert f"cloudlora dataset wrap {folder}" in error.fix
    before = sorted(p.name for p in folder.iterdir())

    assert main(["dataset", "wrap", str(folder)]) == 0
    out = capsys.readouterr().out
    new_root = out.split("The dataset is ")[1].split(" (a copy)")[0]
    wrapped = check_dataset(new_root)
    assert wrapped.ok and wrapped.summary["subsets"][0]["folder"] == "10_cldemo"
    assert wrapped.summary["images"] == wrapped.summary["captions"] == 6
    assert sorted(p.name for p in folder.iterdir()) == before, "the user's folder is left as it was"


def test_the_wrap_route_does_the_same(tmp_path, api_client):
    from fastapi import FastAPI

    from cloudlora import api

    app = FastAPI()
    api.mount(app, None)
    folder = _photos(tmp_path / "mystyle", n=2)
    answer = api_client(app).post("/cloudlora/v1/datasets/wrap", json={"path": str(folder), "repeats": 4})
    assert answer.status_code == 200, answer.text
    assert answer.json()["report"]["ok"] and answer.json()["report"]["summary"]["subsets"][0]["folder"] == "4_mystyle"


def test_prepare_for_starts_at_the_family_of_the_newest_model_in_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    store = open_store(settings.resolve())
    assert datasets_panel.default_family() == "sd15"  # no model yet: never SDXL by default
    models.upload_model(store, write_safetensors(tmp_path / "mine.safetensors", {k: (8, 4) for k in SD15}))
    assert datasets_panel.default_family() == "sd15"
    time.sleep(1.1)  # "newest" is by the manifests' creation time, in seconds
    models.upload_model(store, write_safetensors(tmp_path / "xl.safetensors", {k: (4, 4) for k in SDXL}),
                        name="xl")
    assert datasets_panel.default_family() == "sdxl"


def test_the_datasets_panel_offers_to_wrap_loose_images(tmp_path, ui_server, browser_page):
    folder = _photos(tmp_path / "cldemo", n=3)
    page = browser_page
    page.goto(ui_server())
    page.locator(".tab-nav button", has_text="Cloud Asset Management").first.click()
    page.locator("#cloudlora_ds_folder textarea, #cloudlora_ds_folder input").first.fill(str(folder))
    page.locator("#cloudlora_ds_validate").first.click()
    report = page.locator("#cloudlora_ds_report_body").first
    expect(report).to_contain_text("3 image(s) lie directly in cldemo/", timeout=60_000)
    expect(page.locator("#cloudlora_ds_wrap_trigger textarea, #cloudlora_ds_wrap_trigger input").first) \
        .to_have_value("cldemo")
    page.locator("#cloudlora_ds_wrap").first.click()
    expect(report).to_contain_text("Ready to upload", timeout=60_000)
    expect(report).to_contain_text("10_cldemo")
    assert not (folder / "10_cldemo").exists()
    shutil.rmtree(folder)  # the copy no longer needs it
