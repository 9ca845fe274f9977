"""Watching a job in the browser, as a user lives it: after Create Training Job the job shows at once under the
button, without scrolling, with a progress bar and step x/y, it/s, time left and cost; refreshes change the values
in place with no progress overlay or greyed panel; the log shows its last lines; each fact is said once."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.webui.test_jobs_browser import _md, _pick, _tab

# Samples, every 50 ms in the page, anything of gradio's progress display over the job panel, the log and the list:
# a visible status tracker (spinner, "processing | 0.4s", eta bar) or a dimmed (pending) block.
_WATCH = """() => {
  window.__overlays = [];
  const shown = (el) => {  // drawn, and not faded out by itself or by an ancestor
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return false;
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (s.display === "none" || s.visibility === "hidden" || parseFloat(s.opacity) < 0.05) return false;
    }
    return true;
  };
  const roots = ["cloudlora_job_status", "cloudlora_log", "cloudlora_jobs", "cloudlora_loss_plot"];
  window.__sampler = setInterval(() => {
    for (const id of roots) {
      for (const el of document.querySelectorAll("#" + id)) {
        // dimmed (gradio's "pending") anywhere inside; the plot's own menu and legend are translucent by design
        for (const part of id === "cloudlora_loss_plot" ? [el] : [el, ...el.querySelectorAll("*")]) {
          if (!(part instanceof HTMLElement)) continue;  // a plot's SVG draws with opacity on purpose
          const dim = parseFloat(getComputedStyle(part).opacity);
          if (dim > 0.05 && dim < 0.99) window.__overlays.push(id + ": " + part.tagName + "." + part.className + " opacity " + dim);
        }
        for (const w of el.querySelectorAll(".wrap, .eta-bar, .progress-text, .loader")) {
          if (shown(w)) window.__overlays.push(id + ": " + (w.className || w.tagName) + " " +
                                               (w.textContent || "").trim());
        }
      }
    }
  }, 50);
}"""


def _facts(page):
    return page.locator("#cloudlora_job_status .cloudlora-facts").first


def _line_shown_in_log(page, text) -> bool:
    """Whether the log line containing `text` lies inside the log box's visible area (not scrolled away)."""
    return page.evaluate("""(text) => {
      const box = [...document.querySelectorAll("#cloudlora_log .cloudlora-log")].pop();
      const line = [...box.querySelectorAll(".cloudlora-log-line")].find(l => l.textContent.includes(text));
      if (!line) return false;
      const b = box.getBoundingClientRect(), l = line.getBoundingClientRect();
      return l.top >= b.top - 1 && l.bottom <= b.bottom + 1;
    }""", text)


def test_a_new_job_shows_its_progress_under_create_and_refreshes_quietly_to_the_end(
        job_env, fake_trainer, ui_server, browser_page, screenshot):
    fake_trainer(steps=40, delay=0.25)  # about 10 s of "training": several refresh ticks
    page = browser_page
    page.goto(ui_server())
    _tab(page, "Train Management").click()
    _pick(page, "cloudlora_train_model", job_env.model)
    _pick(page, "cloudlora_train_dataset", job_env.dataset)
    expect(_md(page, "cloudlora_estimate")).to_contain_text("steps")
    page.locator("#cloudlora_create_job").click()

    panel = _md(page, "cloudlora_job_status")
    expect(panel).to_contain_text(job_env.trigger, timeout=60_000)  # the new job, named after its trigger word
    expect(panel).to_be_in_viewport()  # where the user's eyes are: no scrolling to find it
    expect(panel.locator("[role=progressbar]")).to_be_visible(timeout=30_000)
    expect(_facts(page)).to_have_text(
        re.compile(r"step \d+/40 · [\d.]+ it/s · about \d+s left · elapsed \d+s · no cloud cost"), timeout=30_000)
    assert panel.text_content().count("step ") == 1, "the step is said once"
    screenshot(page, "jobs-progress")

    page.evaluate(_WATCH)
    first = _facts(page).text_content()
    page.wait_for_timeout(7000)  # two refresh ticks and more
    assert _facts(page).text_content() != first, "the numbers move while it trains"
    expect(panel).to_contain_text("Completed", timeout=60_000)
    page.wait_for_timeout(3500)  # a tick after the end
    overlays = page.evaluate("() => { clearInterval(window.__sampler); return window.__overlays; }")
    assert overlays == [], f"progress overlays or dimmed panels during refreshes: {sorted(set(overlays))[:5]}"

    # The log follows its tail: the last line is in view, the first ones have scrolled away.
    expect(_md(page, "cloudlora_log")).to_contain_text("step=40/40")
    assert _line_shown_in_log(page, "step=40/40")
    assert not _line_shown_in_log(page, "step=1/40 ")
    # Each fact once: the list's Status column says the state, its Step column the step.
    row = page.locator("#cloudlora_jobs tbody tr").first
    expect(row).to_contain_text("Completed")
    assert row.text_content().count("40/40") == 1
