"""Issue 19's "Done when", walked as a new user walks it: the standalone app from a fresh clone (`pip install -e
".[ui]"` in a fresh venv, `cloudlora ui`), and nothing but the README's first screen (its Quick start, steps 2–5):
get a base model (one click on "SD 1.5" in the Checkpoints panel: fetched from a local hub-like server behind
HF_ENDPOINT and uploaded), upload a dataset (the sample dataset, Datasets → Validate → Upload), Create Training Job
(Local, a fast config), watch it, close the page and open a new one (the Train tab follows that job, its settings in
the form), see it complete and find the LoRA in the Lora folder the Connection panel names.

One walk in headless Chromium against 127.0.0.1 only; the job trains with the real trainer (the checkout's
.venv/trainer through CLOUDLORA_TRAINER_PYTHON: the managed venv is proved in tests/host) on the tiny SD 1.5 model,
which is the hub's file. The app is spoken to through the browser and REST only (no cloudlora.jobs import)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import expect

from cloudlora.assets import known_bases
from tests.webui.fixtures.browser import _stop
from tests.webui.fixtures.standalone import start_installed_app

FAST = {"max_train_steps": "4", "resolution": "128,128"}  # tests/host/test_jobs_in_the_host.py's FAST, in the form


def _field(page, elem_id):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def _md(page, elem_id):
    return page.locator(f"#{elem_id}").last


def _tab(page, name):
    page.locator(".tab-nav button", has_text=name).first.click()


def _pick(page, elem_id, value):
    box = page.locator(f"#{elem_id} input").first
    box.click()
    page.locator("ul.options li", has_text=value).first.click()
    expect(box).to_have_value(value)


def _start_app(venv: Path, env: dict, log: Path, cwd: Path) -> tuple[subprocess.Popen, str, str]:
    token = "first-hour-token"
    proc, base = start_installed_app(venv, cwd, log, token, env, timeout=120)
    return proc, base, token


def _rest(base: str, token: str, path: str) -> dict:
    req = urllib.request.Request(base + path, headers={"X-CloudLoRA-Token": token})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_a_new_user_gets_a_base_trains_watches_reopens_the_tab_and_finds_the_lora(
        standalone_venv, hub_server, tiny_sd15, trainer_python, sample_dataset, browser_page, screenshot, tmp_path):
    started = time.monotonic()
    sd15 = known_bases.by_key("sd15")
    hub_server.add(sd15.repo, {sd15.file: tiny_sd15.read_bytes()})  # the hub's SD 1.5 is the tiny one
    photos = shutil.copytree(sample_dataset, tmp_path / "photos" / "dataset")  # the user's folder (not the repo's)
    proc, base, token = _start_app(standalone_venv, {"CLOUDLORA_TRAINER_PYTHON": trainer_python},
                                   tmp_path / "ui.log", tmp_path)
    url = f"{base}/?token={token}"  # the address `cloudlora ui` prints
    try:
        # The routes answer a moment before the app prints its address (it is mounted first): wait for the line.
        deadline = time.monotonic() + 30
        while f"Cloud LoRA Trainer: {base}" not in (tmp_path / "ui.log").read_text(errors="replace") \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"Cloud LoRA Trainer: {base}" in (tmp_path / "ui.log").read_text(errors="replace")
        page = browser_page
        page.goto(url)

        # 2. Get a base model: Cloud Asset Management → Checkpoints → Get a base model → SD 1.5 → Fetch model.
        _tab(page, "Cloud Asset Management")
        page.locator("#cloudlora_base_sd15").first.click()
        expect(_field(page, "cloudlora_fetch_source")).to_have_value(sd15.repo)
        page.locator("#cloudlora_fetch_button").first.click()
        fetch = page.locator("#cloudlora_fetch_progress").first
        expect(fetch).to_contain_text("sha256 checked against the hub", timeout=60_000)
        expect(fetch).to_contain_text("uploaded as 'sd15' (sd15)", timeout=60_000)
        expect(page.locator("#cloudlora_ckpt_list").first).to_contain_text("sd15", timeout=30_000)
        assert any(e["path"].startswith("/cdn/") and e["status"] == 200 for e in hub_server.log), hub_server.log

        # 3. A dataset: Datasets → its path → Validate → Upload.
        _field(page, "cloudlora_ds_folder").fill(str(photos))
        page.locator("#cloudlora_ds_validate").first.click()
        expect(page.locator("#cloudlora_ds_report_body").first).to_contain_text("Ready to upload", timeout=60_000)
        name_box = _field(page, "cloudlora_ds_name")
        expect(name_box).to_have_value("dataset")  # the folder's name
        page.locator("#cloudlora_ds_upload").first.click()
        expect(page.locator("#cloudlora_ds_progress").first).to_contain_text("Uploaded dataset 'dataset'",
                                                                              timeout=60_000)
        expect(page.locator("#cloudlora_ds_list").first).to_contain_text("dataset", timeout=30_000)
        # 5. Where the LoRA lands: the Connection panel's Lora folder.
        lora_dir = Path(_field(page, "cloudlora_lora_dir").input_value())
        assert lora_dir == Path(os.environ["CLOUDLORA_DATA_DIR"]) / "Lora", lora_dir

        # 4. Create a job: Train Management → Model, Dataset → Create Training Job (Local, a fast config).
        _tab(page, "Train Management")
        page.locator("#cloudlora_create_job").wait_for(state="visible")
        expect(_field(page, "cloudlora_instance")).to_have_value(re.compile(r"^Local \(this machine\)"))
        # The Model and Dataset lists were filled when the page loaded, before the fetch and the upload; showing the
        # tab lists them again, with no Refresh lists (the README's first screen does not say to press it).
        _pick(page, "cloudlora_train_model", "sd15")
        _pick(page, "cloudlora_train_dataset", "dataset")
        expect(_md(page, "cloudlora_trigger")).to_contain_text("cldemo")
        expect(_field(page, "cloudlora_lora_name")).to_have_value("cldemo")  # the trigger word
        config = page.locator("#cloudlora_config textarea").first  # the TOML, collapsed behind the fields
        for key, value in FAST.items():
            box = _field(page, f"cloudlora_knob_{key}")
            box.fill(value)
            box.press("Tab")  # leaving the field writes it into the TOML: wait for that before the next field
            expect(config).to_have_value(re.compile(rf'^{key} = "?{value}"?\s*(#.*)?$', re.M), timeout=30_000)
        expect(_md(page, "cloudlora_estimate")).to_contain_text(re.compile(r"\b4 steps"), timeout=30_000)
        page.locator("#cloudlora_create_job").click()
        status = _md(page, "cloudlora_job_status")
        expect(status).to_contain_text("cldemo", timeout=60_000)
        job_box = _field(page, "cloudlora_job_id")
        expect(job_box).to_have_value(re.compile(r"\S"), timeout=30_000)
        job_id = job_box.input_value()
        expect(status).to_contain_text(job_id)
        expect(page.locator("#cloudlora_jobs")).to_contain_text(job_id, timeout=30_000)

        # Watch it: the panel moves past Queued (the trainer runs: its state and, once it trains, step x/4).
        expect(status).to_contain_text(re.compile(r"Starting|Training|step \d+/4|Completed"), timeout=60_000)

        # Close the tab and open the address again: the Train tab follows that job, its settings in the form.
        context = page.context
        page.close()
        page = context.new_page()
        page.goto(url)
        _tab(page, "Train Management")
        page.locator("#cloudlora_create_job").wait_for(state="visible")
        expect(_field(page, "cloudlora_job_id")).to_have_value(job_id, timeout=30_000)
        status = _md(page, "cloudlora_job_status")
        expect(status).to_contain_text(job_id, timeout=30_000)
        expect(_field(page, "cloudlora_lora_name")).to_have_value("cldemo")
        expect(_field(page, "cloudlora_train_model")).to_have_value("sd15")
        expect(_field(page, "cloudlora_train_dataset")).to_have_value("dataset")
        for key, value in FAST.items():
            expect(_field(page, f"cloudlora_knob_{key}")).to_have_value(value)
        print(f"reopened at {time.monotonic() - started:.0f} s: {status.text_content()!r}")

        # It completes, and the panel names the LoRA in the Lora folder, where the file is.
        expect(status).to_contain_text("Completed", timeout=150_000)
        expect(status).to_contain_text("step 4/4")
        expect(status).to_contain_text("cldemo.safetensors", timeout=30_000)
        named = status.locator("code", has_text="cldemo.safetensors").first.text_content()
        lora = Path(named) if os.path.isabs(named) else lora_dir / named
        assert lora.parent == lora_dir and lora.is_file() and lora.stat().st_size > 0, (named, list(lora_dir.iterdir()))
        job = _rest(base, token, f"/cloudlora/v1/jobs/{job_id}")
        assert job["status"] == "Completed" and job["step"] == job["total_steps"] == 4, job
        screenshot(page, "first-hour-walk-completed")
    finally:
        _stop(proc)
    log = (tmp_path / "ui.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    print(f"the walk took {time.monotonic() - started:.0f} s")
