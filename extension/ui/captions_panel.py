"""The Datasets panel's captions: review before training (every caption editable in a table, tag frequencies with
one-click removal from every caption, the trigger-word check) and Caption (WD14 tags or Florence-2 sentences, on this
machine, in the background, with progress per image and time left).

Only components and wiring: the work is cloudlora.assets.captions (review) and assets.captioning (Caption), the same
functions as `cloudlora dataset tags|caption` and the REST routes. The dataset folder is the panel's gr.State `root`,
set by the server's own Validate; a client cannot name another folder.
"""
from __future__ import annotations

import time

import gradio as gr

from ..errors import UserError
from .checkpoints_panel import POLL, error_html, esc

TAG_HEADERS = ["Tag", "Captions"]
CAPTION_HEADERS = ["Image", "Caption"]
CAPTIONER_CHOICES = [("Tags (WD14)", "wd14"), ("Sentences (Florence-2)", "florence2")]
LABEL_TO_NAME = dict(CAPTIONER_CHOICES)


def _table(headers: list[str], rows: list) -> dict:
    return gr.update(value={"headers": headers, "data": rows})


def _empty():
    return _table(TAG_HEADERS, []), gr.update(choices=[], value=None), "", _table(CAPTION_HEADERS, []), []


def trigger_html(check: dict, total: int) -> str:
    missing, uncaptioned = check["missing"], check["uncaptioned"]
    if not total:
        return ""
    parts = []
    if missing:
        rows = "".join(f"<li><code>{esc(m['rel'])}</code> lacks '{esc(m['trigger'])}'</li>" for m in missing[:50])
        more = f"<li>… and {len(missing) - 50} more</li>" if len(missing) > 50 else ""
        parts.append(f"<div class='cloudlora-warnings'><b>⚠ {len(missing)} caption(s) without their trigger word"
                     f"</b> (the LoRA learns the trigger from the captions that have it)<ul>{rows}{more}</ul>"
                     "<i>Fix: edit those captions below, or caption again with mode append/replace (the trigger "
                     "goes first).</i></div>")
    if uncaptioned:
        parts.append(f"<div>{len(uncaptioned)} image(s) without a caption: training uses the trigger word alone. "
                     "<b>Caption</b> below writes them.</div>")
    if not parts:
        parts.append(f"<div class='cloudlora-done'>✓ All {total} captions hold their trigger word.</div>")
    return "<div id='cloudlora_cap_trigger_body'>" + "".join(parts) + "</div>"


def review(root):
    """-> tag table, tag picker, trigger check, caption table, the items' images (rel paths, in table order)."""
    from ..assets import captions

    if not root:
        return _empty()
    try:
        r = captions.review(root)
    except UserError as err:
        empty = _empty()
        return empty[0], empty[1], error_html(err), empty[3], empty[4]
    tags = r["tags"]
    rows = [[i["rel"], i["caption"]] for i in r["items"]]
    return (_table(TAG_HEADERS, tags), gr.update(choices=[t for t, _ in tags], value=None),
            trigger_html(r["trigger"], len(rows)), _table(CAPTION_HEADERS, rows), rows)


def pick_tag(data, evt: gr.SelectData):
    try:
        return data[evt.index[0]][0]
    except (IndexError, TypeError):
        return None


def remove_tag(root, tag):
    from ..assets import captions

    if not root:
        return "Validate a dataset first."
    if not tag:
        return "Pick a tag first (click it in the frequencies)."
    try:
        out = captions.remove_tag(root, tag)
    except UserError as err:
        return f"✗ {err.message} {err.fix}"
    return f"✓ Removed '{out['tag']}' from {len(out['changed'])} caption(s)."


def save_table(root, listed, table):
    """Writes the captions edited in the table (only the rows whose text changed)."""
    from ..assets import captions

    if not root:
        return "Validate a dataset first."
    before = {row[0]: row[1] for row in (listed or [])}
    rows = table.values.tolist() if hasattr(table, "values") else (table or [])
    changed = [(str(r[0]), str(r[1] or "")) for r in rows if len(r) >= 2 and str(r[0]) in before
               and str(r[1] or "") != before[str(r[0])]]
    if not changed:
        return "No caption changed."
    try:
        for rel, text in changed:
            captions.edit_caption(root, rel, text)
    except UserError as err:
        return f"✗ {err.message} {err.fix}"
    return f"✓ Saved {len(changed)} caption(s)."


def captioner_fields(label):
    """Threshold and exclude are the tagger's, sentence length Florence-2's: only the chosen captioner's show."""
    tags = LABEL_TO_NAME.get(label, label) == "wd14"
    return gr.update(visible=tags), gr.update(visible=tags), gr.update(visible=not tags)


def size_note(label) -> str:
    from ..assets import captioners

    return captioners.size_note(LABEL_TO_NAME.get(label, label))


def caption(root, label, mode, threshold, exclude, detail):
    """Runs Caption in the background; yields (progress html, task id) until it ends."""
    from ..assets import captioning, tasks

    if not root:
        yield "<div class='cloudlora-error'>✗ Validate a dataset first.</div>", ""
        return
    try:
        opts = captioning.CaptionOptions(LABEL_TO_NAME.get(label, label), mode, float(threshold), 0.85,
                                         exclude or "", detail).check()
        task = tasks.start("caption", captioning.caption_dataset, root, opts, setup=True)
    except UserError as err:
        yield error_html(err), ""
        return
    yield from follow_caption(task)


def follow_caption(task):
    from ..assets import captioning

    while not task.done():
        p = task.progress
        bar = (f"<progress max='{p.total}' value='{p.done}' style='width:100%'></progress><br>"
               if p is not None and p.phase == "captioning" and p.total else "")
        yield (f"<div class='cloudlora-progress' style='min-height:4em'>Captioning {bar}"
               f"<code>{esc(captioning.progress_text(p))}</code></div>", task.id)
        time.sleep(POLL)
    err = task.exception()
    if err is None:
        r = task.result()
        from ..assets.captions import summary_text

        tags = sorted((r.get("tags") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
        yield (f"<div class='cloudlora-done' id='cloudlora_cap_done'>✓ Captioned {r.get('images', 0)} image(s): "
               f"{r.get('written', 0)} caption(s) written, {r.get('kept', 0)} kept, in {r.get('seconds', 0):.0f} s."
               f"<br>Tags: {esc(summary_text(tags, 20))}</div>", task.id)
    elif task.status() == "cancelled":
        yield ("<div class='cloudlora-error'>Cancelled. The captions written so far are kept; Caption again with "
               "mode keep finishes the rest.</div>", task.id)
    else:
        yield error_html(err), task.id


def cancel(task_id: str) -> str:
    from ..assets import tasks

    return tasks.cancel(task_id, "the captions written so far are kept")


def render(root):
    """Builds the review and Caption; returns (refresh handler, its outputs, [events after which to refresh])."""
    from ..assets import captioning

    gr.Markdown("**Captions**: review them before training; **Caption** writes them for you.")
    with gr.Row():
        with gr.Column():
            tags = gr.Dataframe(headers=TAG_HEADERS, type="array", interactive=False, label="Tag frequencies "
                                "(click a tag to pick it)", elem_id="cloudlora_cap_tags")
            with gr.Row():
                tag = gr.Dropdown(choices=[], label="Tag", elem_id="cloudlora_cap_tag")
                remove_button = gr.Button("Remove from every caption", elem_id="cloudlora_cap_remove")
        with gr.Column():
            trigger = gr.HTML(elem_id="cloudlora_cap_trigger")
    table = gr.Dataframe(headers=CAPTION_HEADERS, type="array", interactive=True, col_count=(2, "fixed"),
                         label="Captions (edit in place, then Save edited captions)", elem_id="cloudlora_cap_table")
    listed = gr.State([])  # the rows as the server listed them: only changed rows are written
    save_button = gr.Button("Save edited captions", elem_id="cloudlora_cap_save")
    review_status = gr.Markdown(elem_id="cloudlora_cap_status")
    with gr.Row():
        captioner = gr.Radio([label for label, _ in CAPTIONER_CHOICES], value=CAPTIONER_CHOICES[0][0],
                             label="Captioner", elem_id="cloudlora_cap_with")
        mode = gr.Radio(list(captioning.MODES), value="keep", label="Existing captions",
                        info="; ".join(f"{k}: {v}" for k, v in captioning.MODE_HELP.items()),
                        elem_id="cloudlora_cap_mode")
    with gr.Row():
        threshold = gr.Slider(0.05, 0.95, value=0.35, step=0.05, label="Tag threshold (WD14: lower = more tags)",
                              elem_id="cloudlora_cap_threshold")
        exclude = gr.Textbox(label="Exclude tags (WD14, comma-separated)", elem_id="cloudlora_cap_exclude")
        detail = gr.Radio(list(captioning.DETAILS), value="short", label="Sentence length (Florence-2)",
                          visible=False, elem_id="cloudlora_cap_detail")
    with gr.Row():
        caption_button = gr.Button("Caption", variant="primary", elem_id="cloudlora_cap_run")
        note = gr.Markdown(value=lambda: size_note(CAPTIONER_CHOICES[0][0]), elem_id="cloudlora_cap_size")
        cancel_button = gr.Button("Cancel captioning", elem_id="cloudlora_cap_cancel")
    work = gr.HTML(elem_id="cloudlora_cap_work")
    task_id = gr.Textbox(visible=False)
    for c in (tags, tag, trigger, table, review_status, captioner, mode, threshold, exclude, detail, note, work,
              task_id):
        c.do_not_save_to_config = True

    outputs = [tags, tag, trigger, table, listed]
    tags.select(pick_tag, tags, tag)
    captioner.change(size_note, captioner, note)
    captioner.change(captioner_fields, captioner, [threshold, exclude, detail])
    removed = remove_button.click(remove_tag, [root, tag], review_status)
    saved = save_button.click(save_table, [root, listed, table], review_status)
    captioned = caption_button.click(caption, [root, captioner, mode, threshold, exclude, detail], [work, task_id])
    captioned = captioned.then(size_note, captioner, note)
    cancel_button.click(cancel, task_id, work)
    for event in (removed, saved, captioned):
        event.then(review, root, outputs)
    return review, outputs, [removed, saved, captioned]
