"""The user's main path in a browser, in the WebUI as Install from URL leaves it: Train Management → Create Training
Job (Local) → Completed → the LoRA, its sidecar and preview in models/Lora, and its card in the txt2img and img2img
Lora cards with no click and no reload; Pull LoRA again adds the second card the same way; Open TensorBoard works;
Use in txt2img puts it into the prompt."""
from __future__ import annotations

import re
import urllib.request

from playwright.sync_api import expect

from tests.host.test_jobs_in_the_host import FAST


def _tab(page, name):
    return page.locator("#tabs > .tab-nav button", has_text=name).first


def _md(page, elem_id):
    return page.locator(f"#{elem_id}").last  # gradio 3.41 puts a markdown's elem_id on the wrapper and the text


def _pick(page, elem_id, value):
    box = page.locator(f"#{elem_id} input").first
    box.click()
    page.locator("ul.options li", has_text=value).first.click()
    expect(box).to_have_value(value)


def _card(page, tab, name):
    """A card in the Lora page of txt2img/img2img (A1111's cached HTML, present even while the tab is hidden)."""
    return page.locator(f'#{tab}_lora_cards_html .card[data-name="{name}"]')


def _fast_config(text: str) -> str:
    for key, value in FAST.items():
        quoted = value if value.isdigit() else f'"{value}"'
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {quoted}", text)
        assert n == 1, key
    return text


def test_create_training_job_local_in_the_tab_lands_the_lora_and_its_cards_show_at_once(webui, assets, browser_page,
                                                                                       screenshot):
    host, page = webui.host, browser_page
    page.goto(host.url)
    # The cards are built at the first page load and then cached, as in A1111 1.10.1.
    for tab in ("txt2img", "img2img"):
        expect(_md(page, f"{tab}_lora_cards_html")).not_to_contain_text("Loading...", timeout=60_000)
        expect(_card(page, tab, "tab_lora")).to_have_count(0)

    _tab(page, "Train Management").click()
    page.locator("#cloudlora_create_job").wait_for(state="visible")
    name = page.locator("#cloudlora_lora_name textarea, #cloudlora_lora_name input").first
    jobs = host.get("/cloudlora/v1/jobs")  # the REST tests' jobs: the tab opens on the newest, its form filled in
    if jobs:
        newest = max(jobs, key=lambda j: j["created"])
        expect(name).to_have_value(newest["lora_name"])
    _pick(page, "cloudlora_train_model", assets.model)
    _pick(page, "cloudlora_train_dataset", assets.dataset)
    if not jobs:
        expect(name).to_have_value(assets.trigger)  # with no job yet, the suggested name is the trigger word
    name.fill("tab_lora")
    page.locator("#cloudlora_config_box").get_by_text("config_params (Kohya TOML").click()  # collapsed at first
    config = page.locator("#cloudlora_config textarea")
    config.fill(_fast_config(config.input_value()))
    expect(_md(page, "cloudlora_estimate")).to_contain_text("steps")
    screenshot(page, "host-train-form")

    page.locator("#cloudlora_create_job").click()
    status = _md(page, "cloudlora_job_status")  # the new job shows at once under the button
    expect(status).to_contain_text("tab_lora", timeout=60_000)
    # The first local job sets up the managed trainer venv (torch + the lock) before it trains.
    # Its own end: a refresh queued just before Create can still paint the previously selected job for one tick
    # (the REST tests' failed job, under gradio 4's parallel queue), and the next tick paints this one again.
    expect(status).to_contain_text(re.compile(r"LoRA tab_lora · (Completed|Failed|Stopped)"), timeout=900_000)
    if "LoRA tab_lora · Completed" not in status.inner_text():
        expect(status).to_contain_text("LoRA tab_lora · Completed", timeout=10_000)
    expect(status).to_contain_text("tab_lora.safetensors", timeout=60_000)  # auto-pulled
    assert {p.name for p in host.lora_dir.glob("tab_lora*")} == {
        "tab_lora.safetensors", "tab_lora.json", "tab_lora.preview.png"}
    # No click and no reload: the page refreshed both Lora card lists after the pull.
    expect(_card(page, "txt2img", "tab_lora")).to_have_count(1, timeout=30_000)
    expect(_card(page, "img2img", "tab_lora")).to_have_count(1)
    screenshot(page, "host-train-completed")

    # Pull LoRA again: a second copy (tab_lora-1) and its card, again with no click on the Lora tabs.
    page.locator("#cloudlora_pull").click()
    expect(_md(page, "cloudlora_action_msg")).to_contain_text("tab_lora-1", timeout=60_000)
    expect(_card(page, "txt2img", "tab_lora-1")).to_have_count(1, timeout=30_000)
    expect(_card(page, "img2img", "tab_lora-1")).to_have_count(1)

    # TensorBoard runs in the managed venv, started by the WebUI from the bare clone.
    page.locator("#cloudlora_tensorboard").click()
    message = _md(page, "cloudlora_action_msg")
    expect(message).to_contain_text("TensorBoard: http://127.0.0.1:", timeout=120_000)
    url = re.search(r"http://127\.0\.0\.1:\d+/", message.inner_text()).group(0)
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200

    # Use in txt2img: the LoRA and its trigger word go into the txt2img prompt, and txt2img is shown.
    page.locator("#cloudlora_use_txt2img").click()
    expect(page.locator("#txt2img_prompt textarea")).to_have_value(re.compile(r"<lora:tab_lora(-1)?:1>"))
    page.locator("#txt2img_lora-button, #txt2img_extra_tabs button", has_text="Lora").first.click()
    screenshot(page, "host-txt2img-lora-cards")
