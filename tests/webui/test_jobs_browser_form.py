"""The Train Management form in the browser, as a user fills it: a click on Create Training Job always acts, on the
values on screen; the plain fields and the TOML stay in step both ways; a resolution takes the bucket bounds the user
never wrote along, and bounds the user set give their error as the value is typed; Delete record asks first and says
one thing; no button is only an emoji."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from cloudlora.jobs import service
from tests.webui.test_jobs_browser import _md, _pick, _tab


def _field(page, key):
    return page.locator(f"#cloudlora_knob_{key} textarea, #cloudlora_knob_{key} input").first


def _open_toml(page):
    page.locator("#cloudlora_config_box").get_by_text("config_params (Kohya TOML").click()
    config = page.locator("#cloudlora_config textarea")
    expect(config).to_be_visible()
    return config


def _steps_of_each_job() -> list[int]:
    return sorted(int(re.search(r"max_train_steps = (\d+)", service.get_job(j["id"])["config"]).group(1))
                  for j in service.list_jobs(refresh=False))


def _wait_for_jobs(page, n: int) -> None:
    for _ in range(120):
        if len(service.list_jobs(refresh=False)) >= n:
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"the click made no job ({len(service.list_jobs(refresh=False))} of {n})")


def test_the_first_click_on_create_acts_on_the_values_typed_even_while_a_field_has_focus(
        job_env, fake_trainer, ui_server, browser_page):
    fake_trainer(steps=2, delay=0.05)
    page = browser_page
    page.goto(ui_server())
    _tab(page, "Train Management").click()
    _pick(page, "cloudlora_train_model", job_env.model)
    _pick(page, "cloudlora_train_dataset", job_env.dataset)
    expect(_md(page, "cloudlora_estimate")).to_contain_text("steps")
    panel = _md(page, "cloudlora_job_status")
    known: set[str] = set()
    for n, steps in enumerate(("11", "12", "13"), start=1):
        field = _field(page, "max_train_steps")
        field.fill(steps)  # typed, still focused: no Tab, no Enter
        expect(field).to_be_focused()
        page.locator("#cloudlora_create_job").click()
        _wait_for_jobs(page, n)
        expect(page.locator("#cloudlora_create_job")).to_be_enabled(timeout=30_000)
        # The job this click made (creation times have whole seconds, and clicks can share one).
        (new,) = {j["id"] for j in service.list_jobs(refresh=False)} - known
        known.add(new)
        expect(panel).to_contain_text(new, timeout=30_000)  # and it is the job shown
    assert _steps_of_each_job() == [11, 12, 13], "one job per click, each with the value typed"


def test_the_fields_and_the_toml_stay_in_step_and_the_resolution_takes_default_bounds_along(
        job_env, ui_server, browser_page, screenshot):
    page = browser_page
    page.goto(ui_server())
    _tab(page, "Train Management").click()
    expect(page.locator("#cloudlora_train_model input").first).to_have_value(job_env.model)  # page-load values in
    config = _open_toml(page)
    expect(config).to_have_value(re.compile(r"min_bucket_reso = 256\b"))
    message = _md(page, "cloudlora_knob_msg")

    # SD 1.5's default bounds are 256..1024: 64 used to be refused at Create, for bounds the user never wrote.
    resolution = _field(page, "resolution")
    resolution.fill("64")
    expect(message).to_contain_text("min_bucket_reso 256 → 64")  # said as it is typed
    resolution.press("Tab")
    expect(config).to_have_value(re.compile(r'resolution = "64,64"'))
    expect(config).to_have_value(re.compile(r"min_bucket_reso = 64\b"))

    # A TOML typed or pasted moves the plain fields.
    text = config.input_value().replace("max_train_steps = 1000", "max_train_steps = 77")
    text = text.replace("min_bucket_reso = 64", "min_bucket_reso = 128")  # now a bound the user chose
    config.fill(text)
    expect(_field(page, "max_train_steps")).to_have_value("77")
    expect(_field(page, "resolution")).to_have_value("64,64")

    # That bound is theirs: typing a resolution below it says so at once, and the TOML keeps it.
    resolution.fill("96")
    expect(message).to_contain_text("min_bucket_reso = 128")
    expect(message).to_contain_text("change them there")
    screenshot(page, "jobs-resolution-bounds")
    resolution.press("Tab")
    expect(config).to_have_value(re.compile(r"min_bucket_reso = 128\b"))
    expect(config).not_to_have_value(re.compile(r'resolution = "96'))


def test_delete_record_asks_first_and_then_says_one_thing(job_env, fake_trainer, ui_server, browser_page):
    fake_trainer(steps=2, delay=0.05, fail="RuntimeError: boom")
    job = service.create_job({"model": job_env.model, "dataset": job_env.dataset, "family": "sd15",
                              "config": service.default_config("sd15"), "lora_name": "doomed"})
    page = browser_page
    page.goto(ui_server())
    _tab(page, "Train Management").click()
    page.locator("#cloudlora_jobs").get_by_text(job["id"]).click()
    panel = _md(page, "cloudlora_job_status")
    expect(panel).to_contain_text("Failed", timeout=60_000)
    page.locator("#cloudlora_delete").click()
    expect(page.get_by_text("A LoRA already in the Lora folder stays")).to_be_visible()
    page.locator("#cloudlora_delete_no").click()  # kept
    expect(page.locator("#cloudlora_delete_yes")).to_be_hidden()
    assert service.get_job(job["id"])["status"] == "Failed"
    page.locator("#cloudlora_delete").click()
    page.locator("#cloudlora_delete_yes").click()
    expect(_md(page, "cloudlora_action_msg")).to_have_text(f"Deleted the record of {job['id']}.")
    expect(panel).to_contain_text("No job selected")
    page.wait_for_timeout(3500)  # a refresh tick later, still nothing contradicts it
    assert "in the store" not in panel.text_content()
    expect(page.locator("#cloudlora_jobs")).not_to_contain_text(job["id"])


def test_every_button_has_words_and_no_text_needs_an_emoji_font(ui_server, browser_page):
    page = browser_page
    page.goto(ui_server())
    emoji = re.compile("[\U0001F000-\U0001FAFF\u2705\u274C\u23F3\u2796\uFE0F]")
    for name in ("Cloud Asset Management", "Train Management"):
        _tab(page, name).click()
        page.wait_for_timeout(1000)
        for button in page.locator("button:visible").all():
            label = (button.text_content() or "").strip() or (button.get_attribute("title") or "")
            assert re.search(r"[A-Za-z]", label), f"a button without words in {name}: {label!r}"
        if name == "Train Management":  # a message too: Create with nothing chosen
            page.locator("#cloudlora_create_job").click()
            expect(_md(page, "cloudlora_create_msg")).to_contain_text("Fix:")
        text = page.locator("body").inner_text()
        assert not emoji.search(text), f"{name} shows emoji (empty boxes without an emoji font): " \
                                       f"{sorted(set(emoji.findall(text)))}"
