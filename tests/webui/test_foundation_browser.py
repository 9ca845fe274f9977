"""In a real browser (Chromium) against `cloudlora ui`: both tabs render with their controls, Check connection answers,
and Save writes the settings file. Screenshots go to artifacts/."""
from __future__ import annotations

import json
import os

from playwright.sync_api import expect

from cloudlora import settings
from tests.webui.late_answers import Held, event_indexes


def _tab(page, name):
    # gradio 3.41's tab buttons have no role="tab"; the .tab-nav buttons exist in 3.41 and 4.x alike.
    return page.locator(".tab-nav button", has_text=name).first


def _open(page, base_url):
    page.goto(base_url)
    _tab(page, "Cloud Asset Management").wait_for()
    _tab(page, "Train Management").wait_for()


def test_both_tabs_render_and_check_connection_explains_the_missing_credentials(ui_server, browser_page,
                                                                                  screenshot):
    from cloudlora.doctor import run_checks

    base = ui_server()
    page = browser_page
    _open(page, base)
    _tab(page, "Cloud Asset Management").click()
    for elem_id in ["cloudlora_backend", "cloudlora_aws_profile", "cloudlora_region"]:
        assert page.locator(f"#{elem_id}").is_visible(), elem_id
    # With no settings the backend is the embedded default: Local.
    assert page.locator("#cloudlora_backend input[value='Local']").is_checked()

    page.locator("#cloudlora_check_connection").click()
    result = page.locator("#cloudlora_connection_result").first
    result.get_by_role("cell", name="aws credentials", exact=True).wait_for(timeout=90_000)
    # The same checks, run here with the same (credential-less) environment, say what the page must show.
    expected = next(c for c in run_checks(settings.resolve()) if c.name == "aws credentials")
    assert expected.status == "skip"  # the backend is Local: AWS is information, not a problem
    text = result.inner_text()
    assert expected.detail.split("(")[0].strip() in text
    assert "Not needed" in text and "No problems found" in text and "problem(s)" not in text
    screenshot(page, "foundation-assets-tab-check-connection")

    _tab(page, "Train Management").click()
    page.locator("#tab_cloudlora_train").wait_for(state="visible")
    assert not page.locator("#cloudlora_connection").is_visible()
    screenshot(page, "foundation-train-tab")


def test_saving_the_connection_writes_the_settings_file_and_shows_where(ui_server, browser_page, screenshot):
    settings.save({"region": "us-west-1"})  # saved before: the page shows it once its load event has run
    base = ui_server()
    page = browser_page
    _open(page, base)
    expect(page.locator("#cloudlora_region textarea, #cloudlora_region input").first).to_have_value("us-west-1")
    page.locator("#cloudlora_backend").get_by_text("SageMaker").click()
    page.locator("#cloudlora_aws_profile textarea, #cloudlora_aws_profile input").first.fill("work")
    page.locator("#cloudlora_region textarea, #cloudlora_region input").first.fill("eu-central-1")
    page.locator("#cloudlora_save_connection").click()
    page.locator("#cloudlora_connection_result").first.get_by_text("Saved to").wait_for()
    screenshot(page, "foundation-connection-saved")
    saved = json.loads(settings.settings_file().read_text())
    assert saved == {"backend": "sagemaker", "aws_profile": "work", "region": "eu-central-1"}
    assert str(settings.settings_file()) in page.locator("#cloudlora_connection_result").first.inner_text()

    # A fresh page load shows the saved values (they are read when the page loads, not when the app started).
    page.reload()
    expect(page.locator("#cloudlora_backend input[value='SageMaker']")).to_be_checked()
    expect(page.locator("#cloudlora_region textarea, #cloudlora_region input").first).to_have_value("eu-central-1")
    expect(page.locator("#cloudlora_aws_profile textarea, #cloudlora_aws_profile input").first).to_have_value("work")
    assert os.environ.get("AWS_SECRET_ACCESS_KEY") is None


PAGE = """<html><body>
<div id="txt2img_prompt"><textarea>a dog</textarea></div>
<button id="txt2img_lora_extra_refresh_internal" onclick="window.clicks.push('txt2img')"></button>
<button id="img2img_lora_extra_refresh_internal" onclick="window.clicks.push('img2img')"></button>
<script>
window.clicks = []; window.inputs = 0; window.switched = 0;
function switch_to_txt2img() { window.switched++; }
document.querySelector('#txt2img_prompt textarea').addEventListener('input', () => window.inputs++);
</script></body></html>"""


def test_the_page_helpers_put_a_lora_into_the_txt2img_prompt_and_refresh_the_lora_cards(browser_page):
    """javascript/cloudlora.js on a page with A1111's element ids (checked by hand in A1111 1.10.1 too)."""
    from pathlib import Path

    page = browser_page
    page.set_content(PAGE)
    page.add_script_tag(path=str(Path(__file__).resolve().parents[2] / "javascript" / "cloudlora.js"))
    assert page.evaluate("cloudloraUseInTxt2img('<lora:demo:1> demo')") == "<lora:demo:1> demo"
    assert page.locator("#txt2img_prompt textarea").input_value() == "a dog, <lora:demo:1> demo"
    assert page.evaluate("[window.inputs, window.switched]") == [1, 1]  # gradio hears it; the tab switches
    assert page.evaluate("cloudloraRefreshLoras()") == 2
    assert page.evaluate("window.clicks") == ["txt2img", "img2img"]
    # Without the WebUI around (standalone), they do nothing and do not fail.
    page.set_content("<html><body></body></html>")
    page.add_script_tag(path=str(Path(__file__).resolve().parents[2] / "javascript" / "cloudlora.js"))
    assert page.evaluate("cloudloraRefreshLoras()") == 0
    assert page.evaluate("cloudloraUseInTxt2img('x')") == "x"


def test_a_late_answer_of_the_page_load_never_undoes_what_the_user_set_before_save(ui_server, browser_page):
    # Under load the page's load event can answer after the user has already clicked and typed: it once put back the
    # saved values, and Save wrote backend=local (seen in fresh-clone runs with the lanes on).
    settings.save({"region": "us-west-1"})
    base = ui_server()
    page = browser_page
    _open(page, base)
    loads = event_indexes(page, writes="cloudlora_region", trigger="load")
    assert loads
    held = Held(page, loads)
    _open(page, base)  # again, with the load's answer held
    page.locator("#cloudlora_backend").get_by_text("SageMaker").click()
    page.locator("#cloudlora_aws_profile textarea, #cloudlora_aws_profile input").first.fill("work")
    page.locator("#cloudlora_region textarea, #cloudlora_region input").first.fill("eu-central-1")
    assert held.held()
    held.release()  # the load's answer arrives now, late
    page.wait_for_timeout(1500)
    page.locator("#cloudlora_save_connection").click()
    page.locator("#cloudlora_connection_result").first.get_by_text("Saved to").wait_for()
    saved = json.loads(settings.settings_file().read_text())
    assert saved == {"backend": "sagemaker", "aws_profile": "work", "region": "eu-central-1"}
