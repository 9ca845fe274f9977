"""In a real browser against `cloudlora ui`: pick model and dataset, Create Training Job, watch the job reach
Completed with its loss curve and sample, and find the LoRA in the Lora folder.

The local backend runs tests/webui/jobs_support/fake_trainer.py here (the same container contract, in seconds);
test_jobs_end_to_end.py runs the real trainer through the CLI.
"""
from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.webui.late_answers import Held, event_indexes


def _tab(page, name):
    return page.locator(".tab-nav button", has_text=name).first


def _md(page, elem_id):
    # gradio 3.41 puts a markdown's elem_id on its wrapper and on the text: take the text.
    return page.locator(f"#{elem_id}").last


def _pick(page, elem_id, value):
    """Chooses an option of a gradio dropdown (3.41 and 4.x: type into its input, click the option)."""
    box = page.locator(f"#{elem_id} input").first
    box.click()
    page.locator("ul.options li", has_text=value).first.click()
    expect(box).to_have_value(value)


def test_create_training_job_in_the_tab_follows_it_to_completed_and_the_lora_lands(
        job_env, fake_trainer, ui_server, browser_page, screenshot):
    fake_trainer(steps=8, delay=0.4)
    page = browser_page
    page.goto(ui_server())
    _tab(page, "Train Management").click()
    page.locator("#cloudlora_create_job").wait_for(state="visible")
    _pick(page, "cloudlora_train_model", job_env.model)
    _pick(page, "cloudlora_train_dataset", job_env.dataset)
    expect(_md(page, "cloudlora_trigger")).to_contain_text(job_env.trigger)
    name = page.locator("#cloudlora_lora_name textarea, #cloudlora_lora_name input").first
    expect(name).to_have_value(job_env.trigger)  # the LoRA name suggests the trigger word, not "dataset"
    name.fill("browser_lora")
    expect(_md(page, "cloudlora_estimate")).to_contain_text("steps")
    screenshot(page, "jobs-train-form")

    page.locator("#cloudlora_create_job").click()
    status = _md(page, "cloudlora_job_status")
    expect(status).to_contain_text("browser_lora", timeout=60_000)
    expect(status).to_contain_text("Completed", timeout=120_000)
    expect(page.locator("#cloudlora_jobs")).to_contain_text("browser_lora")
    # The loss curve (vega renders the plot) and the sample image show for the selected job.
    expect(page.locator("#cloudlora_loss_plot canvas, #cloudlora_loss_plot svg").first).to_be_visible(timeout=30_000)
    expect(page.locator("#cloudlora_samples img").first).to_be_visible(timeout=30_000)
    expect(_md(page, "cloudlora_log")).to_contain_text("step=8/8")
    expect(status).to_contain_text("browser_lora.safetensors", timeout=30_000)  # auto-pulled
    screenshot(page, "jobs-completed")
    page.wait_for_timeout(4000)  # a few more refresh ticks: the LoRA must be pulled once, not once per refresh
    assert sorted(p.name for p in job_env.lora_dir.iterdir()) == [
        "browser_lora.json", "browser_lora.preview.png", "browser_lora.safetensors"]


def test_the_plain_fields_edit_the_toml_and_format_shows_problems_inline(job_env, ui_server, browser_page,
                                                                         screenshot):
    page = browser_page
    page.goto(ui_server())
    _tab(page, "Train Management").click()
    config = page.locator("#cloudlora_config textarea")
    expect(config).to_be_hidden()  # the TOML waits collapsed behind the plain fields
    page.locator("#cloudlora_config_box").get_by_text("config_params (Kohya TOML").click()
    expect(config).to_have_value(re.compile(r"max_train_steps = 1000"))
    # Untouched defaults follow the FM Type.
    page.locator("#cloudlora_fm_type").get_by_text("SDXL").click()
    expect(config).to_have_value(re.compile(r'resolution = "1024,1024"'))
    page.locator("#cloudlora_fm_type").get_by_text("SD 1.5").click()
    expect(config).to_have_value(re.compile(r'resolution = "512,512"'))
    steps = page.locator("#cloudlora_knob_max_train_steps textarea, #cloudlora_knob_max_train_steps input").first
    steps.fill("250")
    steps.press("Tab")  # leaving the field writes it into the TOML
    expect(config).to_have_value(re.compile(r"max_train_steps = 250\b"))
    expect(config).to_have_value(re.compile(r"# Kohya LoRA training config"))  # comments kept
    config.fill(config.input_value() + "\nlerning_rate = 0.001\n")
    page.locator("#cloudlora_format_config").click()
    message = _md(page, "cloudlora_config_msg")
    expect(message).to_contain_text("unknown key 'lerning_rate'")
    expect(message).to_contain_text("learning_rate")  # the nearest known key
    expect(config).to_have_value(re.compile(r"lerning_rate"))  # nothing of the user's text is lost
    screenshot(page, "jobs-config-errors")


def test_a_late_answer_about_the_model_shown_at_opening_never_turns_back_the_fm_type_the_user_picked(
        job_env, tiny_sdxl, ui_server, browser_page):
    # The page's opening sets the Model list (an SD 1.5 model here). Under load, an answer to that change can arrive
    # after the user has already picked SDXL: it must not switch FM Type back behind the user's back (it once left
    # SD 1.5 shown over SDXL's TOML, and a second click on SD 1.5 then did nothing).
    from cloudlora import settings
    from cloudlora.assets.models import upload_model
    from cloudlora.store import open_store

    upload_model(open_store(settings.resolve()), tiny_sdxl, name="tiny-sdxl")
    page = browser_page
    url = ui_server()
    page.goto(url)
    model_events = event_indexes(page, writes="cloudlora_fm_type", on="cloudlora_train_model")
    assert model_events  # FM Type still follows a model the user picks
    held = Held(page, model_events)
    page.goto(url)  # again, now with the model's answers held
    _tab(page, "Train Management").click()
    page.locator("#cloudlora_config_box").get_by_text("config_params (Kohya TOML").click()
    config = page.locator("#cloudlora_config textarea")
    expect(page.locator("#cloudlora_train_model input").first).to_have_value(job_env.model)  # opening has answered
    page.locator("#cloudlora_fm_type").get_by_text("SDXL").click()
    expect(config).to_have_value(re.compile(r'resolution = "1024,1024"'))
    # Now the held answers about the opening's model arrive, late.
    held.release()
    page.wait_for_timeout(1500)
    expect(page.locator("#cloudlora_fm_type input[value='SDXL']")).to_be_checked()
    expect(config).to_have_value(re.compile(r'resolution = "1024,1024"'))
    page.locator("#cloudlora_fm_type").get_by_text("SD 1.5").click()
    expect(config).to_have_value(re.compile(r'resolution = "512,512"'))
    # A model the user picks still sets FM Type to its family, with that family's TOML.
    _pick(page, "cloudlora_train_model", "tiny-sdxl")
    expect(page.locator("#cloudlora_fm_type input[value='SDXL']")).to_be_checked()
    expect(config).to_have_value(re.compile(r'resolution = "1024,1024"'))
