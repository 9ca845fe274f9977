"""The "In the store" list both asset panels share: relist, pick a row, ask before deleting, delete and relist."""
from __future__ import annotations

from typing import Callable

import gradio as gr

Rows = Callable[[], "tuple[list[list], str]"]  # -> (table rows, total text)


def handlers(headers: list[str], rows: Rows, delete: Callable[[str], int], ask_text: Callable[[str], str],
             nothing_selected: str):
    """(relist, pick, ask, delete) event handlers for one list; `delete(name)` returns the objects removed."""

    def table(data):
        return gr.update(value={"headers": headers, "data": data})

    def relist_():
        data, text = rows()
        return table(data), text

    def pick_(data, evt: gr.SelectData):
        try:
            return data[evt.index[0]][0]
        except (IndexError, TypeError):
            return ""

    def ask_(name):
        if not (name or "").strip():
            return gr.update(visible=False), nothing_selected
        return gr.update(visible=True), ask_text(name)

    def delete_(name):
        try:
            message = f"Deleted '{name}' ({delete(name.strip())} objects)."
        except Exception as err:  # noqa: BLE001 - shown to the user, the list is refreshed either way
            message = getattr(err, "message", str(err))
        data, text = rows()
        return gr.update(visible=False), table(data), f"{message}\n\n{text}", ""

    return relist_, pick_, ask_, delete_
