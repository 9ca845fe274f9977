"""In Chromium against `cloudlora ui` (standalone) and a local hub-like server: one click on "SD 1.5" fills the source,
Fetch downloads it with progress into the data folder and uploads it; the Lora folder field offers the ComfyUI install
found in the home folder, and Save keeps it."""
from __future__ import annotations

import json

from playwright.sync_api import expect

from cloudlora import settings
from cloudlora.assets import known_bases
from tests.webui.test_assets_browser import _field, _open_assets
from tests.webui.test_lora_folder_setting import fake_installs
from tests.webui.test_model_fetch import checkpoint_bytes
from tests.webui.test_assets_family import SD15


def test_fetch_a_well_known_base_in_one_click_and_pick_the_lora_folder(
        hub_server, ui_server, browser_page, screenshot, tmp_path):
    sd15 = known_bases.by_key("sd15")
    data = checkpoint_bytes(tmp_path, SD15, pad_mib=24)
    hub_server.add(sd15.repo, {sd15.file: data, "v1-5-pruned.safetensors": data[:100]})
    hub_server.delay = 0.004  # slow enough to see the progress
    home = tmp_path / "home"
    installs = fake_installs(home)
    base = ui_server(env={"HOME": str(home), "USERPROFILE": str(home), "CLOUDLORA_STORE": str(tmp_path / "store")})
    page = browser_page
    _open_assets(page, base)

    page.locator("#cloudlora_base_sd15").first.click()
    expect(_field(page, "cloudlora_fetch_source")).to_have_value(sd15.repo)
    expect(_field(page, "cloudlora_fetch_file")).to_have_value(sd15.file)
    expect(page.locator("#cloudlora_fetch_note").first).to_contain_text("CreativeML OpenRAIL-M")
    page.locator("#cloudlora_fetch_button").first.click()
    progress = page.locator("#cloudlora_fetch_progress").first
    expect(progress).to_contain_text("downloading", timeout=30_000)  # size, speed and time left while it runs
    screenshot(page, "assets-fetch-downloading")
    expect(progress).to_contain_text("sha256 checked against the hub", timeout=60_000)
    expect(progress).to_contain_text("uploaded as 'sd15' (sd15)")
    expect(page.locator("#cloudlora_ckpt_list").first).to_contain_text("sd15", timeout=30_000)
    assert (settings.data_dir() / "models" / "Stable-diffusion" / sd15.file).read_bytes() == data

    page.locator("#cloudlora_base_flux1_dev").first.click()
    expect(page.locator("#cloudlora_fetch_note").first).to_contain_text("Gated")

    expect(page.locator("#cloudlora_lora_dir_note").first).to_contain_text(str(installs["ComfyUI"]))
    lora = page.locator("#cloudlora_lora_dir input").first
    lora.click()
    lora.fill("")  # the list shows every choice, not only those matching the current folder
    page.locator("ul.options li", has_text=str(installs["ComfyUI"])).first.click()
    expect(lora).to_have_value(str(installs["ComfyUI"]))
    page.locator("#cloudlora_save_connection").first.click()
    expect(page.locator("#cloudlora_connection_result").first).to_contain_text(
        f"Finished LoRAs go to {installs['ComfyUI']}", timeout=30_000)
    screenshot(page, "assets-fetch-done-lora-folder")
    assert json.loads(settings.settings_file().read_text())["lora_dir"] == str(installs["ComfyUI"])
