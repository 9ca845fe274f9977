"""The Train tab tells the truth at each moment (issue 19, items 2 and 8), walked in one browser session per host so
the suite pays for few page loads: reopening the tab follows the newest running job with its settings in the form and
the Trainings List in sight on a 1280×900 window; no message, table, button or status outlives the moment it was
true (Stopping…, Pulled into…, the last run's timing table, "exit None", an empty plot's ±Infinity axes, Use in
txt2img and TensorBoard for a failed job, "Training" while the final samples render); Refresh lists keeps the FM
Type; the Local instance says what this machine has; Loss said once, Resume as big as its neighbours; and gradio 4
warns about none of the tab's arguments."""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from cloudlora.jobs import service
from cloudlora.jobs.spec import JobSpec

from .test_jobs_phases import TAIL

ROOT = Path(__file__).resolve().parents[2]


def _md(page, elem_id):
    return page.locator(f"#{elem_id}").last


def _value(page, elem_id):
    return page.locator(f"#{elem_id} input, #{elem_id} textarea").first


def _spec(job_env, name: str) -> JobSpec:
    return JobSpec(model=job_env.model, dataset=job_env.dataset, family="sd15",
                   config=service.default_config("sd15"), lora_name=name)


def _wait(job_id: str, states: tuple, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = service.get_job(job_id)
        if job["status"] in states:
            return job
        assert time.monotonic() < deadline, f"{job_id} is {job['status']}, not {states}"
        time.sleep(0.2)


def _open_train_tab(page, url):
    page.goto(url)
    page.locator(".tab-nav button", has_text="Train Management").first.click()
    page.locator("#cloudlora_create_job").wait_for(state="visible")


def _select(page, job_id):
    box = _value(page, "cloudlora_job_id")
    box.fill(job_id)
    box.press("Enter")
    expect(_md(page, "cloudlora_job_status")).to_contain_text(job_id, timeout=30_000)


def _elapsed_s(page) -> int:
    text = page.locator("#cloudlora_job_status .cloudlora-facts").first.text_content()
    m = re.search(r"(?:elapsed|took) (?:(\d+)m )?(\d+)s", text)
    assert m, text
    return int(m.group(1) or 0) * 60 + int(m.group(2))


def test_the_panel_follows_the_newest_job_and_says_only_what_is_true_now(
        job_env, fake_trainer, tiny_sdxl, ui_server, browser_page, monkeypatch, screenshot):
    from cloudlora import settings
    from cloudlora.assets.models import upload_model
    from cloudlora.store import open_store

    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 900})

    # Standalone, no job yet. An SDXL model listed before the SD 1.5 one: neither opening the tab nor Refresh lists
    # picks it (that switched FM Type without asking).
    upload_model(open_store(settings.resolve()), tiny_sdxl, name="aaa-sdxl")
    _open_train_tab(page, ui_server())
    fm = page.locator("#cloudlora_fm_type")
    expect(_value(page, "cloudlora_train_model")).to_have_value(job_env.model)
    page.locator("#cloudlora_train_refresh").click()
    page.wait_for_timeout(1500)
    expect(_value(page, "cloudlora_train_model")).to_have_value(job_env.model)
    expect(fm.locator("input[type=radio]:checked")).to_have_value("SD 1.5")
    # FLUX.1 on this machine without a GPU: the Local instance says so, not "your GPU: at least 24 GB".
    fm.get_by_text("FLUX.1").click()
    instance = _value(page, "cloudlora_instance")
    expect(instance).to_have_value(re.compile(r"^Local \(this machine\) · FLUX\.1: no GPU found"))

    # Jobs: one failed before any step, one completed (pulled), one training, one stopped while queued behind it.
    fake_trainer(steps=0, delay=0.01, fail="RuntimeError: boom")
    failed = service.create_job(_spec(job_env, "failed_one"))["id"]
    _wait(failed, ("Failed",))
    fake_trainer(steps=2, delay=0.01)
    done = service.create_job(_spec(job_env, "done_one"))["id"]
    _wait(done, ("Completed",))
    # The trainer's closing timing summary comes on a stop too; the final samples take a while after the last step.
    fake_trainer(steps=100, delay=0.25)
    monkeypatch.setenv("FAKE_TAIL", TAIL)
    monkeypatch.setenv("FAKE_FINISH_DELAY", "8")
    running = service.create_job(_spec(job_env, "running_one"))["id"]
    _wait(running, ("Training",))
    queued = service.create_job(_spec(job_env, "queued_one"))["id"]
    _wait(queued, ("Queued",))
    service.stop_job(queued)
    _wait(queued, ("Stopped",))

    # Reopening the tab (inside the WebUI) follows the newest running job, its settings in the form, and the list is
    # in sight without scrolling.
    _open_train_tab(page, ui_server(in_webui=True))
    panel = _md(page, "cloudlora_job_status")
    expect(_value(page, "cloudlora_job_id")).to_have_value(running, timeout=30_000)
    expect(panel).to_contain_text("running_one", timeout=30_000)
    expect(_value(page, "cloudlora_lora_name")).to_have_value("running_one")
    expect(_value(page, "cloudlora_train_model")).to_have_value(job_env.model)
    expect(_value(page, "cloudlora_train_dataset")).to_have_value(job_env.dataset)
    rows = page.locator("#cloudlora_jobs tbody tr")
    expect(rows).to_have_count(4)
    assert page.evaluate("() => window.scrollY") == 0, "the page was scrolled"
    for i in range(4):
        expect(rows.nth(i)).to_be_in_viewport(ratio=1)
    screenshot(page, "jobs-reopened-1280x900")

    # Stop: "stopping the trainer…" goes once it has stopped.
    expect(page.locator("#cloudlora_job_status .cloudlora-facts").first).to_contain_text("step", timeout=30_000)
    page.locator("#cloudlora_stop").click()
    message = _md(page, "cloudlora_action_msg")
    expect(message).to_contain_text("stopping the trainer", ignore_case=True)
    expect(panel).to_contain_text("Stopped", timeout=30_000)
    expect(message).not_to_contain_text("stopping", ignore_case=True, timeout=10_000)
    expect(_md(page, "cloudlora_job_explanation")).to_contain_text("Where the time went")  # that run's, true
    # Resume as big as Delete beside it (gradio's small button has a smaller font and padding).
    resume, delete = page.locator("#cloudlora_resume"), page.locator("#cloudlora_delete")
    expect(resume).to_be_visible()
    look = "el => [getComputedStyle(el).fontSize, getComputedStyle(el).padding, el.getBoundingClientRect().height]"
    assert resume.evaluate(look) == delete.evaluate(look), "Resume is smaller than Delete beside it"
    page.wait_for_timeout(2000)
    before = _elapsed_s(page)
    resume.click()
    expect(panel).not_to_contain_text("Stopped", timeout=30_000)
    expect(page.locator("#cloudlora_job_status .cloudlora-facts").first).to_contain_text("elapsed", timeout=30_000)
    # The last run's timing table goes, and elapsed goes on from the runs before.
    expect(_md(page, "cloudlora_job_explanation")).not_to_contain_text("Where the time went", timeout=10_000)
    assert _elapsed_s(page) >= before, "elapsed started again from 0 after Resume"

    # "Pulled into …" belongs to its job: picking another job clears it.
    _select(page, done)
    page.locator("#cloudlora_pull").click()
    expect(message).to_contain_text("Pulled into", timeout=30_000)
    expect(page.locator("#cloudlora_use_txt2img")).to_be_visible()  # a LoRA was made: it can be used
    _select(page, failed)
    expect(panel).to_contain_text("Failed")
    expect(message).not_to_contain_text("Pulled into", timeout=10_000)
    # A failed job made no LoRA and logged no step: no Use in txt2img, no TensorBoard, no ±Infinity axes.
    page.wait_for_timeout(3500)  # a refresh tick later
    expect(page.locator("#cloudlora_use_txt2img")).to_be_hidden()
    expect(page.locator("#cloudlora_tensorboard")).to_be_hidden()
    plot = page.locator("#cloudlora_loss_plot")
    assert "Infinity" not in (plot.inner_text() or "")
    assert page.locator("#cloudlora_loss_plot canvas, #cloudlora_loss_plot svg.marks").count() == 0, \
        "an empty loss plot draws axes"
    screenshot(page, "jobs-failed-no-actions")

    # A job stopped while queued never ran a trainer: its log says so, not "exit None".
    _select(page, queued)
    log = _md(page, "cloudlora_log")
    expect(log).to_contain_text("finished:")
    expect(log).not_to_contain_text("exit None")

    # After the last step the final samples render: the status says that, not "Training".
    _select(page, running)
    expect(panel).to_contain_text("rendering the final samples", ignore_case=True, timeout=60_000)
    assert "Training" not in panel.text_content()
    screenshot(page, "jobs-finishing")
    expect(panel).to_contain_text("Completed", timeout=60_000)


def test_loss_is_said_once_and_gradio_4_warns_about_no_argument_of_the_train_tab(tmp_path):
    """The loss plot has its label and no title inside the chart too. Forge and the standalone app run gradio 4.40
    (tools/env.sh's Forge venv), where LinePlot has no width: Forge logged `GradioDeprecationWarning: unexpected
    argument for LinePlot: width` when the tab loaded."""
    import gradio as gr

    from cloudlora.ui import train_tab

    tab = train_tab.build()
    (plot,) = [b for b in tab.blocks.values() if isinstance(b, gr.LinePlot)]
    assert plot.label == "Loss" and not getattr(plot, "title", None), "'Loss' is said twice (label and title)"
    forge = ROOT / ".venv" / "host-forge" / "bin" / "python"
    if not forge.exists():
        pytest.skip("no Forge venv (.venv/host-forge, made by tools/env.sh)")
    shim = tmp_path / "shim"  # what the Forge venv lacks and the extension imports: from the WebUI venv
    shim.mkdir()
    import platformdirs

    (shim / "platformdirs").symlink_to(Path(platformdirs.__file__).parent)
    script = f"""
import importlib.util, warnings
spec = importlib.util.spec_from_file_location("boot", {str(ROOT / "extension" / "bootstrap.py")!r})
boot = importlib.util.module_from_spec(spec); spec.loader.exec_module(boot); boot.install()
import gradio as gr
from cloudlora.ui import train_tab
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    train_tab.build()
print("GRADIO", gr.__version__)
for w in caught:
    if "gradio" in w.filename or "argument" in str(w.message).lower():
        print("WARNING", w.category.__name__, str(w.message).strip().splitlines()[0])
"""
    env = {**os.environ, "PYTHONPATH": str(shim), "CLOUDLORA_STORE": str(tmp_path / "store")}
    out = subprocess.run([str(forge), "-c", script], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert "GRADIO 4." in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]
    warned = [ln for ln in out.stdout.splitlines() if ln.startswith("WARNING") and "argument" in ln.lower()]
    assert not warned, warned
