"""Keeps the WebUI's Lora cards (txt2img, img2img) current: after a pull, the page runs cloudloraRefreshLoras().

A1111 1.10.1 keeps the cards as HTML built once. The server-side rescan after a pull (host.refresh_loras) does not
change them; only the Lora tab's hidden refresh buttons do, even across a page reload. So a hidden field holds the
number of LoRAs this WebUI process has pulled (auto-pull, Pull LoRA, REST), the Train tab's timer updates it, and a
change of it runs the page helper, which clicks both refresh buttons. Only inside a WebUI: standalone there are no
Lora cards. Written for gradio 3.41 (`_js=`) and 4.40 (`js=`).
"""
from __future__ import annotations

import inspect

import gradio as gr

from .. import host
from ..library import pull


def pulls_text() -> str:
    return str(pull.pulls_so_far())


def run_js_on_change(component, js_function: str) -> None:
    """component.change(fn=None, js=...): the keyword is `_js` in gradio 3.x and `js` in 4.x."""
    key = "js" if "js" in inspect.signature(component.change).parameters else "_js"
    component.change(None, None, None, **{key: js_function})


def follow_pulls(ticker) -> None:
    """Adds the hidden pull counter, updated with each change of `ticker` (the tab's timer)."""
    if not host.current().in_webui:
        return
    # "0", not the current count: a page opened after pulls refreshes its cards on the first tick.
    pulls = gr.Textbox(value="0", visible=False, elem_id="cloudlora_pulls")
    pulls.do_not_save_to_config = True
    ticker.change(pulls_text, None, [pulls])
    run_js_on_change(pulls, "cloudloraRefreshLoras")
