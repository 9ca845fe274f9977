"""The two tabs. Gradio components only, written for gradio 3.41 (A1111) and 4.40 (Forge) at once; no logic here.

Rules (REFERENCE.md §1): return gr.update(...), never components; `_js=` on events; no .style(), gr.Box or
concurrency_limit; gr.File without `type`.
"""
from __future__ import annotations


def build_tabs() -> list[tuple]:
    """[(gr.Blocks, title, elem_id)] for on_ui_tabs, and for the standalone app."""
    from . import assets_tab, train_tab

    return [
        (assets_tab.build(), "Cloud Asset Management", "cloudlora_assets"),
        (train_tab.build(), "Train Management", "cloudlora_train"),
    ]
