"""Issue 19: the Train tab's Model and Dataset lists pick up what was just uploaded without Refresh lists. A dataset
uploaded in the Assets tab is in the Train tab's Dataset list as soon as the tab is shown again, and the user's
picks stay. Walked in headless Chromium on both gradios the tabs are written for: 3.41 (A1111's pin, this venv) and
4.40 (Forge's, and the standalone app's `pip install -e ".[ui]"` in a fresh venv)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.webui.fixtures.browser import _stop
from tests.webui.fixtures.standalone import start_installed_app



def _tab(page, name):
    page.locator(".tab-nav button", has_text=name).first.click()


def _choices(page, elem_id) -> list[str]:
    """The dropdown's options as the user sees them when opening it (then closed again, the value unchanged)."""
    box = page.locator(f"#{elem_id} input").first
    page.locator("#cloudlora_jobs_title").first.click()  # focus elsewhere: a click on the box opens its list
    box.click()
    options = page.locator("ul.options li")
    options.first.wait_for(state="visible")
    found = [t.replace("✓", "").strip() for t in options.all_inner_texts()]  # the picked one carries a tick
    page.locator("#cloudlora_jobs_title").first.click()
    return found


def _pick(page, elem_id, value):
    box = page.locator(f"#{elem_id} input").first
    box.click()
    page.locator("ul.options li", has_text=value).first.click()
    expect(box).to_have_value(value)


def _gradio4_app(tmp_path, venv: Path) -> str:
    """`cloudlora ui` on gradio 4.40 as a user runs it: the README's `pip install -e ".[ui]"` in a fresh venv (the
    session's standalone_venv fixture)."""
    token = "lists-token"
    proc, base = start_installed_app(venv, tmp_path, tmp_path / "ui4.log", token)
    _gradio4_app.procs.append(proc)
    return f"{base}/?token={token}"


_gradio4_app.procs = []


@pytest.mark.parametrize("gradio", ["3.41", "4.40"])
def test_a_dataset_uploaded_in_the_assets_tab_is_in_the_train_list_without_refresh(
        gradio, tmp_path, monkeypatch, tiny_sd15, sample_dataset, ui_server, browser_page, screenshot, request):
    import shutil

    from cloudlora import settings
    from cloudlora.assets.datasets import upload_dataset
    from cloudlora.assets.models import upload_model
    from cloudlora.store import open_store

    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    store = open_store(settings.resolve())
    upload_model(store, tiny_sd15, name="tiny-sd15")
    upload_dataset(store, sample_dataset, name="demo")
    photos = shutil.copytree(sample_dataset, tmp_path / "photos" / "pets")
    try:
        url = ui_server() if gradio == "3.41" else _gradio4_app(tmp_path, request.getfixturevalue("standalone_venv"))
        page = browser_page
        page.goto(url)
        _tab(page, "Train Management")
        page.locator("#cloudlora_create_job").wait_for(state="visible")
        _pick(page, "cloudlora_train_dataset", "demo")
        assert "pets" not in _choices(page, "cloudlora_train_dataset")

        _tab(page, "Cloud Asset Management")
        page.locator("#cloudlora_ds_folder textarea, #cloudlora_ds_folder input").first.fill(str(photos))
        page.locator("#cloudlora_ds_validate").first.click()
        expect(page.locator("#cloudlora_ds_report_body").first).to_contain_text("Ready to upload", timeout=60_000)
        page.locator("#cloudlora_ds_upload").first.click()
        expect(page.locator("#cloudlora_ds_progress").first).to_contain_text("Uploaded dataset 'pets'",
                                                                              timeout=60_000)

        _tab(page, "Train Management")  # no Refresh lists
        dataset = page.locator("#cloudlora_train_dataset input").first
        deadline = time.monotonic() + 20
        while "pets" not in (found := _choices(page, "cloudlora_train_dataset")) and time.monotonic() < deadline:
            page.wait_for_timeout(500)
        screenshot(page, f"train_lists_follow_{gradio}")
        assert "pets" in found and "demo" in found, found
        expect(dataset).to_have_value("demo")  # the user's pick stays
        expect(page.locator("#cloudlora_train_model input").first).to_have_value("tiny-sd15")
        assert not page.locator("#cloudlora_train_lists_sync").is_visible()
    finally:
        while _gradio4_app.procs:
            _stop(_gradio4_app.procs.pop())
