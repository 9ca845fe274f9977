"""Cloud Asset Management: the connection panel, AWS setup, checkpoints and datasets, in that order."""
from __future__ import annotations

import gradio as gr

from . import aws_panel, checkpoints_panel, connection_panel, datasets_panel


def build() -> gr.Blocks:
    with gr.Blocks(analytics_enabled=False) as tab:
        connection_panel.render(tab)
        aws_panel.render()
        checkpoints_panel.render()
        datasets_panel.render()
    return tab
