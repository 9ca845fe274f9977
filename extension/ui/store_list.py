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


def render(prefix: str, noun: str, headers: list[str], rows: Rows, delete: Callable[[str], int],
           ask_text: Callable[[str], str]) -> tuple[Callable, list]:
    """Builds the list (table, total, refresh, select, Delete… with confirmation) and wires it.

    `prefix` names the elements (`cloudlora_<prefix>_list`, ..._delete_yes, ...). Returns (relist, its outputs),
    which the panel chains after an upload: `.then(relist, None, outputs)`."""
    relist, pick, ask, delete_ = handlers(headers, rows, delete, ask_text, f"Select a {noun} first.")
    gr.Markdown("**In the store** (click a row to select it)")
    table = gr.Dataframe(headers=headers, value=lambda: {"headers": headers, "data": rows()[0]},
                         type="array", interactive=False, elem_id=f"cloudlora_{prefix}_list")
    total = gr.Markdown(value=lambda: rows()[1], elem_id=f"cloudlora_{prefix}_total")
    with gr.Row():
        list_button = gr.Button("Refresh list", elem_id=f"cloudlora_{prefix}_list_refresh")
        selected = gr.Textbox(label=f"Selected {noun}", elem_id=f"cloudlora_{prefix}_selected")
        delete_button = gr.Button("Delete…", variant="stop", elem_id=f"cloudlora_{prefix}_delete")
    with gr.Row(visible=False) as confirm_row:
        confirm_text = gr.Markdown()
        yes = gr.Button("Yes, delete it", variant="stop", elem_id=f"cloudlora_{prefix}_delete_yes")
        no = gr.Button("Keep it", elem_id=f"cloudlora_{prefix}_delete_no")
    for c in (table, total, selected, confirm_text):
        c.do_not_save_to_config = True

    list_button.click(relist, None, [table, total])
    table.select(pick, table, selected)
    delete_button.click(ask, selected, [confirm_row, confirm_text])
    no.click(lambda: gr.update(visible=False), None, confirm_row)
    yes.click(delete_, selected, [confirm_row, table, total, selected])
    return relist, [table, total]
