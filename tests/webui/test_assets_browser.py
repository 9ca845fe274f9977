"""In Chromium against `cloudlora ui` with an S3 store (SeaweedFS): validate a dataset folder, see the report and the
gallery, edit a caption, upload it with progress and see it listed; upload a checkpoint and delete it after the
confirmation. Screenshots go to artifacts/."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from cloudlora.assets import datasets, models
from cloudlora.store import open_store
from tests.webui.test_assets_datasets import good_dataset, png
from tests.webui.test_assets_family import SD15, write_safetensors


def _field(page, elem_id):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def _open_assets(page, base):
    page.goto(base)
    page.locator(".tab-nav button", has_text="Cloud Asset Management").first.click()
    page.locator("#cloudlora_datasets").first.wait_for()


def test_validate_a_folder_see_report_and_gallery_edit_a_caption_upload_and_see_it_listed(
        s3_settings, ui_server, browser_page, screenshot, tmp_path):
    root = good_dataset(tmp_path / "mychar", n=3, trigger="mychar", repeats=12)
    png(root / "12_mychar" / "nocap.png", color=(0, 200, 0))
    base = ui_server()
    page = browser_page
    _open_assets(page, base)

    _field(page, "cloudlora_ds_folder").fill(str(root))
    page.locator("#cloudlora_ds_validate").first.click()
    report = page.locator("#cloudlora_ds_report_body").first
    expect(report).to_contain_text("48 images × repeats per epoch", timeout=60_000)
    expect(report).to_contain_text("1 warning(s)")
    expect(report).to_contain_text("12_mychar/nocap.png")
    expect(report).to_contain_text("Ready to upload")
    gallery = page.locator("#cloudlora_ds_gallery").first
    expect(gallery.locator("img")).to_have_count(4)
    expect(_field(page, "cloudlora_ds_name")).to_have_value("mychar")
    screenshot(page, "assets-dataset-validated")

    gallery.locator("button").last.click()  # nocap.png (sorted last): its caption is empty
    expect(page.locator("#cloudlora_ds_caption_status").first).to_contain_text("nocap.png")
    _field(page, "cloudlora_ds_caption").fill("mychar, a green square")
    page.locator("#cloudlora_ds_save_caption").first.click()
    expect(page.locator("#cloudlora_ds_caption_status").first).to_contain_text("Saved nocap.txt")
    assert (root / "12_mychar" / "nocap.txt").read_text(encoding="utf-8").strip() == "mychar, a green square"
    expect(report).not_to_contain_text("warning(s)")

    page.locator("#cloudlora_ds_upload").first.click()
    progress = page.locator("#cloudlora_ds_progress").first
    expect(progress).to_contain_text("Uploaded dataset 'mychar': 8 file(s) sent", timeout=60_000)
    table = page.locator("#cloudlora_ds_list").first
    expect(table).to_contain_text("mychar", timeout=30_000)
    expect(table).to_contain_text("48")
    expect(page.locator("#cloudlora_ds_total").first).to_contain_text("1 dataset(s)")
    screenshot(page, "assets-dataset-uploaded")
    listed = datasets.list_datasets(open_store(s3_settings))
    assert [(d["name"], d["images"], d["captions"]) for d in listed] == [("mychar", 4, 4)]


def test_upload_a_checkpoint_by_path_see_its_family_and_delete_it_after_confirming(
        s3_settings, ui_server, browser_page, screenshot, tmp_path):
    shapes = {k: (8, 4) for k in SD15}
    shapes["model.diffusion_model.padding"] = (160, 1 << 19)  # 160 MiB, so that the upload takes a while
    ckpt = write_safetensors(tmp_path / "base15.safetensors", shapes)
    base = ui_server(env={"CLOUDLORA_UPLOAD_THREADS": "1", "CLOUDLORA_PART_SIZE_MIB": "8"})
    page = browser_page
    _open_assets(page, base)
    _field(page, "cloudlora_ckpt_path").fill(str(ckpt))
    page.locator("#cloudlora_ckpt_upload").first.click()
    status = page.locator("#cloudlora_ckpt_progress").first
    expect(status).to_contain_text("uploading", timeout=30_000)  # bytes, rate and ETA while it runs
    expect(status).to_contain_text(re.compile(r"MiB / 160\.0 MiB .*/s"))
    screenshot(page, "assets-checkpoint-uploading")
    expect(page.locator("#cloudlora_ckpt_progress").first).to_contain_text("Uploaded 'base15' (sd15", timeout=60_000)
    table = page.locator("#cloudlora_ckpt_list").first
    expect(table).to_contain_text("base15", timeout=30_000)
    expect(table).to_contain_text("sd15")
    screenshot(page, "assets-checkpoint-uploaded")

    table.get_by_text("base15").first.click()
    expect(_field(page, "cloudlora_ckpt_selected")).to_have_value("base15")
    page.locator("#cloudlora_ckpt_delete").first.click()
    page.locator("#cloudlora_ckpt_delete_yes").first.click()
    expect(page.locator("#cloudlora_ckpt_total").first).to_contain_text(re.compile(r"Deleted 'base15'"))
    expect(table).not_to_contain_text("base15")
    assert models.list_models(open_store(s3_settings)) == []
