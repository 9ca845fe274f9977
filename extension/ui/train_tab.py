"""Train Management. Placeholder until the jobs feature lands: renders nothing."""
from __future__ import annotations

import gradio as gr


def build() -> gr.Blocks:
    with gr.Blocks(analytics_enabled=False) as tab:
        pass
    return tab
