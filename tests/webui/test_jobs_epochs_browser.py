"""In a real browser, inside the (fake) WebUI: select a finished job, Compare epochs, see the grid the WebUI's
txt2img rendered, and make an earlier epoch the LoRA."""
from __future__ import annotations

import time

from playwright.sync_api import expect

from cloudlora.jobs import service
from cloudlora.jobs.spec import JobSpec


def _md(page, elem_id):
    return page.locator(f"#{elem_id}").last


def test_compare_epochs_in_the_train_tab_shows_the_grid_and_pulls_the_chosen_epoch(
        job_env, fake_trainer, ui_server, browser_page, screenshot):
    fake_trainer(steps=2, delay=0.01)
    job = service.create_job(JobSpec(model=job_env.model, dataset=job_env.dataset, family="sd15",
                                     config=service.default_config("sd15"), lora_name="grid_lora"))
    deadline = time.monotonic() + 60
    while service.get_job(job["id"])["status"] != "Completed":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    page = browser_page
    page.goto(ui_server(in_webui=True))
    page.locator(".tab-nav button", has_text="Train Management").first.click()
    job_box = page.locator("#cloudlora_job_id textarea, #cloudlora_job_id input").first
    job_box.fill(job["id"])
    job_box.press("Enter")
    expect(_md(page, "cloudlora_job_status")).to_contain_text("Completed", timeout=90_000)
    page.locator("#cloudlora_epoch_weights textarea, #cloudlora_epoch_weights input").first.fill("0.5, 1")
    page.locator("#cloudlora_compare_epochs").click()
    expect(_md(page, "cloudlora_epochs_status")).to_contain_text("grid_lora.epochs.png", timeout=120_000)
    expect(page.locator("#cloudlora_epochs_grid img").first).to_be_visible(timeout=60_000)
    assert (job_env.lora_dir / "grid_lora.epochs.png").is_file()
    box = page.locator("#cloudlora_epoch_pick input").first
    box.click()
    page.locator("ul.options li", has_text="grid_lora-000001.safetensors").first.click()
    page.locator("#cloudlora_epoch_use").click()
    expect(_md(page, "cloudlora_epoch_use_msg")).to_contain_text("replacing this job's earlier copy", timeout=60_000)
    screenshot(page, "jobs-epoch-grid")
