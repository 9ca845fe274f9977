"""FM Type clicked twice in quick succession: gradio's queue runs both events at once (the standalone app's workers,
Forge's parallel queue), and only the newest click's answer may change the form."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import gradio as gr

from cloudlora.jobs import service
from cloudlora.ui import train_form

UNCHANGED = gr.update()


def test_sdxl_then_sd15_answered_out_of_order_leaves_sd15_and_the_older_answer_changes_nothing(monkeypatch):
    page, other_page = SimpleNamespace(session_hash="page-1"), SimpleNamespace(session_hash="page-2")
    real = train_form.switch_family
    sdxl_started, release = threading.Event(), threading.Event()

    def slow_sdxl(family, *args, **kwargs):  # SDXL's answer takes long: the user clicks SD 1.5 meanwhile
        if family == "sdxl":
            sdxl_started.set()
            release.wait(30)
        return real(family, *args, **kwargs)

    monkeypatch.setattr(train_form, "switch_family", slow_sdxl)
    sd15_toml = service.default_config("sd15")
    answers = {}
    sdxl = threading.Thread(target=lambda: answers.update(sdxl=train_form.on_family("SDXL", sd15_toml, None, page)))
    sdxl.start()
    assert sdxl_started.wait(30)
    answers["sd15"] = train_form.on_family("SD 1.5", sd15_toml, None, page)  # the newer click ends first
    elsewhere = train_form.on_family("FLUX.1" if "FLUX.1" in train_form.fm_labels() else "SDXL", sd15_toml, None,
                                     other_page)  # another page's clicks are its own
    release.set()
    sdxl.join(30)
    assert answers["sd15"][0]["value"] == "SD 1.5"
    assert answers["sdxl"] == [UNCHANGED] * len(answers["sd15"])  # SDXL's late answer changes nothing
    assert elsewhere[1]["value"] != sd15_toml  # ... and page 2's own click was answered in full
    # Called outside gradio (no page), the function always answers.
    assert train_form.on_family("SDXL", sd15_toml)[1]["value"] == service.default_config("sdxl")
