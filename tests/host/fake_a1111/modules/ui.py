"""create_ui as A1111 1.10.1 orders it: settings callback, txt2img and img2img (prompt + Lora cards), the extensions'
tabs, Settings; all inside `gr.Tabs(elem_id="tabs")` with tab ids `tab_<id>`."""
import gradio as gr

from modules import script_callbacks, shared, ui_extra_networks, ui_gradio_extensions


def _generation_tab(tabname):
    with gr.Blocks(analytics_enabled=False) as interface:
        with gr.Row():
            gr.Textbox(label="Prompt", lines=3, elem_id=f"{tabname}_prompt", show_label=False,
                       placeholder="Prompt")
            gr.Button("Generate", variant="primary", elem_id=f"{tabname}_generate")
        ui_extra_networks.create_ui(interface, tabname)
    return interface


def _settings_tab():
    with gr.Blocks(analytics_enabled=False) as interface:
        for key, info in shared.opts.data_labels.items():
            args = info.component_args() if callable(info.component_args) else (info.component_args or {})
            component = info.component or gr.Textbox
            component(label=info.label, value=shared.opts.data.get(key), elem_id=f"setting_{key}", **args)
    return interface


def create_ui():
    ui_gradio_extensions.reload_javascript()
    script_callbacks.ui_settings_callback()
    interfaces = [(_generation_tab("txt2img"), "txt2img", "txt2img"),
                  (_generation_tab("img2img"), "img2img", "img2img")]
    interfaces += script_callbacks.ui_tabs_callback()
    interfaces += [(_settings_tab(), "Settings", "settings")]
    with gr.Blocks(analytics_enabled=False, title="Stable Diffusion") as demo:
        with gr.Tabs(elem_id="tabs"):
            for interface, label, ifid in interfaces:
                with gr.TabItem(label, id=ifid, elem_id=f"tab_{ifid}"):
                    interface.render()
    return demo
