"""Train Management's epoch comparison: an X/Y grid of the selected job's epoch files x LoRA weights, rendered by the
WebUI's own txt2img inside A1111/Forge and by the trainer's own pipeline in the standalone app, and "Use this epoch
as the LoRA". Thin handlers over cloudlora.jobs.results.epoch_grid and service.pull_job (also REST and
`cloudlora pull`).
"""
from __future__ import annotations

import html

import gradio as gr

from ..errors import UserError
from ..jobs.results import epoch_grid


def _settings():
    from .. import settings as settings_mod

    try:
        return settings_mod.resolve()
    except Exception:
        return settings_mod.Settings()


def _error(err: Exception) -> str:
    if isinstance(err, UserError):
        return f"❌ {html.escape(err.message)}" + (f"<br>**Fix:** {html.escape(err.fix)}" if err.fix else "")
    return f"❌ {html.escape(str(err))}"


def compare(job_id, weights):
    if not job_id:
        return "Select a job first."
    try:
        state = epoch_grid.start(job_id, weights, _settings())
    except Exception as err:  # shown in the panel, never a stack trace
        return _error(err)
    return _status_text(state)


def _status_text(state: dict) -> str:
    if state["status"] == "running":
        by = "the trainer's pipeline" if state.get("renderer") == "trainer" else "the WebUI's txt2img"
        return f"⏳ Rendering with {by}: {state['done']}/{state['total']} images…"
    if state["status"] == "failed":
        return f"❌ {html.escape(state['message'])}"
    if state["status"] == "done":
        return f"✅ Epochs × weights {', '.join(f'{w:g}' for w in state['weights'])}: {html.escape(state['message'])}" \
            if state["weights"] else f"✅ {html.escape(state['message'])}"
    return ""


def refresh(job_id, shown, picked=None):
    """(status md, grid image, epoch choices, shown grid) for the selected job; the image is only re-sent when the
    grid changed, and the user's epoch pick is kept."""
    if not job_id:
        return "", gr.update(value=None, visible=False), gr.update(choices=[], value=None), ""
    state = epoch_grid.status(job_id, _settings())
    image = gr.update()
    key = f"{state['grid']}|{state['status']}"
    if state["status"] == "done" and state["grid"] and key != shown:
        from PIL import Image

        with Image.open(state["grid"]) as im:
            image = gr.update(value=im.copy(), visible=True)
    elif not state["grid"] and shown:
        image = gr.update(value=None, visible=False)
    choices, value = _epoch_choices(job_id, picked)
    return _status_text(state), image, gr.update(choices=choices, value=value), key


def _epoch_choices(job_id, picked):
    """The job's LoRA files; the pick stays, else the best epoch by validation loss, else the final file."""
    from ..jobs import service

    try:
        names = [o.rsplit("/", 1)[-1] for o in service.job_outputs(job_id, _settings())]
        if picked in names:
            return names, picked
        best = (service.get_job(job_id, _settings(), log_lines=0, auto_pull=False).get("best_epoch") or {}).get("file")
    except Exception:
        return [], None
    return names, best if best in names else (names[-1] if names else None)


def use_epoch(job_id, file):
    from ..jobs import service

    if not job_id or not file:
        return "Select a job and an epoch file first."
    try:
        return "✅ " + html.escape(service.pull_job(job_id, _settings(), file=file, as_lora=True)["message"])
    except Exception as err:
        return _error(err)


def render(selected, ticker) -> None:
    """The panel, under the job view; `selected` is the Job ID box, `ticker` the tab's refresh timer."""
    visible = epoch_grid.available()
    if epoch_grid.renderer() == "webui":
        title = "Compare epochs with the WebUI's txt2img"
        about = ("Renders the job's sample prompts with the checkpoint loaded in the WebUI, one row per epoch file "
                 "and one column per LoRA weight. What you see is what txt2img gives.")
    else:
        title = "Compare epochs"
        about = ("Renders the job's sample prompts with the trainer's own pipeline and the job's base model (in the "
                 "trainer environment, with each prompt's fixed seed), one row per epoch file and one column per "
                 "LoRA weight.")
    with gr.Accordion(title, open=True, visible=visible):
        gr.Markdown(about)
        with gr.Row():
            weights = gr.Textbox(value="0.6, 0.8, 1.0", label="LoRA weights", elem_id="cloudlora_epoch_weights")
            compare_btn = gr.Button("Compare epochs", elem_id="cloudlora_compare_epochs")
        status = gr.Markdown(elem_id="cloudlora_epochs_status")
        grid = gr.Image(label="Epochs × weights", type="pil", interactive=False, visible=False,
                        elem_id="cloudlora_epochs_grid")
        with gr.Row():
            pick = gr.Dropdown(label="Epoch file", choices=[], elem_id="cloudlora_epoch_pick")
            use_btn = gr.Button("Use this epoch as the LoRA", elem_id="cloudlora_epoch_use")
        use_msg = gr.Markdown(elem_id="cloudlora_epoch_use_msg")
        shown = gr.State("")
    for c in (weights, pick):
        c.do_not_save_to_config = True
    if not visible:
        return
    outputs = [status, grid, pick, shown]
    inputs = [selected, shown, pick]
    compare_btn.click(compare, [selected, weights], [status]).then(refresh, inputs, outputs)
    selected.change(refresh, inputs, outputs)
    ticker.change(refresh, inputs, outputs)
    use_btn.click(use_epoch, [selected, pick], [use_msg])
