"""Extra networks cards (txt2img / img2img), cached as in A1111 1.10.1.

Each tab's cards are HTML built on the first page load and then kept: a reload gets the same HTML. Only the hidden
button `#<tab>_<page>_extra_refresh_internal` runs every page's refresh() and rebuilds the HTML.
"""
import html
import os
import types

import gradio as gr

extra_pages = []


def register_page(page):
    extra_pages.append(page)


class ExtraNetworksPage:
    def __init__(self, title):
        self.title = title
        self.name = title.lower()
        self.extra_networks_tabname = self.name.replace(" ", "_")

    def refresh(self):
        pass

    def list_items(self):
        raise NotImplementedError()

    def create_item_html(self, tabname, item):
        attrs = {"data-name": item["name"], "data-sd-version": item.get("sd_version", ""),
                 "data-prompt": item.get("prompt", ""), "data-preview": item.get("preview") or ""}
        attr_text = " ".join(f'{k}="{html.escape(str(v), quote=True)}"' for k, v in attrs.items())
        preview = item.get("preview")
        image = (f'<img src="./file={html.escape(preview, quote=True)}?{os.path.getmtime(preview)}" '
                 'style="width:96px;height:96px;object-fit:cover">' if preview else "")
        return (f'<div class="card" {attr_text} style="display:inline-block;width:200px;vertical-align:top;'
                f'margin:4px">{image}<div class="name"><b>{html.escape(item["name"])}</b></div>'
                f'<div class="description">{html.escape(item.get("description", ""))}</div></div>')

    def create_html(self, tabname, *, empty=False):
        items = [] if empty else list(self.list_items())
        cards = "".join(self.create_item_html(tabname, item) for item in items)
        if not items:
            cards = '<div class="nocards">' + ("Loading..." if empty else "Nothing here.") + "</div>"
        return f'<div class="extra-network-cards" id="{tabname}_{self.extra_networks_tabname}_cards">{cards}</div>'


def create_ui(interface, tabname):
    ui = types.SimpleNamespace(pages=[], pages_contents=[], stored_extra_pages=list(extra_pages), tabname=tabname)
    with gr.Tabs(elem_id=f"{tabname}_extra_tabs"):
        for page in ui.stored_extra_pages:
            with gr.Tab(page.title, elem_id=f"{tabname}_{page.extra_networks_tabname}"):
                ui.pages.append(gr.HTML(page.create_html(tabname, empty=True),
                                        elem_id=f"{tabname}_{page.extra_networks_tabname}_cards_html"))

    def create_html():
        ui.pages_contents = [pg.create_html(ui.tabname) for pg in ui.stored_extra_pages]

    def refresh():
        for pg in ui.stored_extra_pages:
            pg.refresh()
        create_html()
        return ui.pages_contents

    def pages_html():
        if not ui.pages_contents:
            create_html()
        return ui.pages_contents

    for page in ui.stored_extra_pages:
        button = gr.Button("Refresh", elem_id=f"{tabname}_{page.extra_networks_tabname}_extra_refresh_internal",
                           visible=False)
        button.click(fn=refresh, inputs=[], outputs=ui.pages)
    interface.load(fn=pages_html, inputs=[], outputs=ui.pages)
    return ui
