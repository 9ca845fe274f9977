"""The Checkpoints panel: pick a WebUI checkpoint (or a path), upload it with progress, list, delete with confirmation.

Only components and wiring: the work is cloudlora.assets.models (the same functions as the CLI and REST), run in a
background task that the event handlers poll, so the UI never blocks. Also holds the small widgets the Datasets
panel shares (progress bar, task follower).
"""
from __future__ import annotations

import html
import time
from pathlib import Path

import gradio as gr

from .. import host
from .. import settings as settings_mod
from ..errors import UserError
from . import store_list

FAMILY_CHOICES = ["Auto (from the file)", "sd15", "sd2", "sdxl", "flux"]
LIST_HEADERS = ["Name", "Family", "Size", "SHA-256", "Created"]
POLL = 0.4


def esc(text) -> str:
    """Text inside HTML elements (never attributes): quotes stay readable."""
    return html.escape(str(text), quote=False)


def open_store():
    from ..store import open_store as _open

    return _open(settings_mod.resolve())


def error_html(err: Exception) -> str:
    if isinstance(err, UserError):
        fix = f"<br><b>Fix:</b> {esc(err.fix)}" if err.fix else ""
        return f"<div class='cloudlora-error'>✗ {esc(err.message)}{fix}</div>"
    return f"<div class='cloudlora-error'>✗ {esc(str(err))}</div>"


def progress_html(p, title: str = "", bar: bool = True) -> str:
    """Bytes, rate and ETA (p: transfer.Progress or None), with a bar unless gr.Progress draws one already."""
    if p is None:
        return f"<div class='cloudlora-progress'>{esc(title)} starting…</div>"
    pct = round(100 * min(1.0, p.fraction), 1)
    meter = f"<progress max='100' value='{pct}' style='width:100%'></progress><br>" if bar else ""
    return (f"<div class='cloudlora-progress' style='min-height:4em'>{esc(title)} {meter}<code>{pct}% · "
            f"{esc(p.text())}</code>{(' · ' + esc(p.item[-60:])) if p.item else ''}</div>")


def follow(task, title: str, done_text, progress=None):
    """Yields progress HTML while the background task runs, then the result (done_text(result)) or the error.

    `progress`: the handler's gr.Progress, fed the same fraction and text."""
    while not task.done():
        p = task.progress
        if progress is not None and p is not None:
            item = f" · {p.item[-50:]}" if p.item else ""
            progress(min(1.0, p.fraction), desc=f"{title}: {p.text()}{item}")
        yield progress_html(p, title, bar=progress is None)
        time.sleep(POLL)
    err = task.exception()
    if err is None:
        yield f"<div class='cloudlora-done'>✓ {esc(done_text(task.result()))}</div>"
    elif task.status() == "cancelled":
        yield "<div class='cloudlora-error'>Cancelled. Upload again to resume: only what is missing is sent.</div>"
    else:
        yield error_html(err)


def cancel_task(task_id: str) -> str:
    from ..assets import tasks

    return tasks.cancel(task_id, "what was sent is kept; uploading again resumes")


def _checkpoints(refresh: bool = False) -> dict[str, str]:
    lister = host.current().list_checkpoints
    return dict(lister(refresh)) if lister else {}


def model_rows() -> tuple[list[list], str]:
    from ..assets import models
    from ..assets.manifests import broken_text
    from ..assets.transfer import format_bytes

    broken: list = []
    try:
        store = open_store()
        items = models.list_models(store, broken)
    except Exception as err:  # noqa: BLE001 - shown in the panel, never a stack trace
        return [], f"Could not list the store: {getattr(err, 'message', err)}"
    rows = [[m["name"], m.get("family", ""), format_bytes(int(m.get("size", 0))), m.get("sha256", "")[:16],
             m.get("created", "")] for m in items]
    total = sum(int(m.get("size", 0)) for m in items)
    note = f"\n\n⚠️ {broken_text(broken, 'model')}" if broken else ""
    return rows, f"{len(items)} model(s), {format_bytes(total)} in `{store.uri('models/')}`{note}"


def upload(choice, path, family, name, clip_l="", t5xxl="", ae="", progress=gr.Progress()):
    """Generator: (progress html, task id). clip_l / t5xxl / ae: FLUX.1's separate files (paths), if any."""
    from ..assets import flux_parts, models, tasks

    target = _checkpoints().get(choice) if choice else None
    target = (path or "").strip() or target
    if not target:
        yield "<div class='cloudlora-error'>✗ Pick a checkpoint or give its path.</div>", ""
        return
    try:
        fam = models.family_of(target, None if family in (None, "", FAMILY_CHOICES[0]) else family)
        parts = {"clip_l": (clip_l or "").strip(), "t5xxl": (t5xxl or "").strip(), "ae": (ae or "").strip()}
        flux_parts.check(Path(target).expanduser(), fam, parts)  # before hashing gigabytes
        task = tasks.start(f"model upload {target}", models.upload_model, open_store(), target,
                           name=(name or "").strip() or None, family=fam, parts=parts)
    except Exception as err:  # noqa: BLE001
        yield error_html(err), ""
        return

    def done(r: dict) -> str:
        from ..assets.transfer import format_bytes

        if r["deduplicated"]:
            return f"Already in the store as '{r['name']}' ({r['family']}): 0 bytes sent."
        return f"Uploaded '{r['name']}' ({r['family']}, {format_bytes(r['size'])}, sha256 {r['sha256'][:12]})."

    for out in follow(task, f"Uploading {task.name.split('/')[-1]}", done, progress):
        yield out, task.id


def base_note(key: str) -> str:
    """One line on a well-known base: family, size, licence (linked), and what a gated one needs."""
    from ..assets import known_bases, models
    from ..assets.transfer import format_bytes

    b = known_bases.by_key(key)
    if b is None:
        return ""
    parts = " (with its text encoders and autoencoder)" if b.parts else ""
    gated = (" **Gated:** open the model's page on Hugging Face, log in, accept the licence, and give a read "
             "token below." if b.gated else "")
    note = f" {b.note.capitalize()}." if b.note else ""
    return (f"**{esc(b.label)}** · {models.FAMILY_LABELS[b.family]} · about {format_bytes(b.size + b.parts_size)}"
            f"{parts} · licence: [{esc(b.licence)}]({b.licence_url}).{gated}{note}")


def pick_base(key: str):
    from ..assets import known_bases

    b = known_bases.by_key(key)
    return b.repo, b.file, base_note(key)


def fetch(source, file, name, token, progress=gr.Progress()):
    """Generator: (progress html, task id). The same function as `cloudlora model fetch` and POST /models/fetch."""
    from ..assets import hub_token, model_fetch, tasks

    token = (token or "").strip()
    try:
        src = model_fetch.parse_source(source, file)
        task = tasks.start(f"model fetch {src.describe()}", model_fetch.fetch_model, open_store(), src,
                           name=(name or "").strip() or None, token=token or None)
    except Exception as err:  # noqa: BLE001
        yield error_html(err), ""
        return

    def done(r: dict) -> str:
        from ..assets.transfer import format_bytes

        got = "already downloaded" if r["already_downloaded"] else f"{format_bytes(r['downloaded_bytes'])} downloaded"
        check = ", sha256 checked against the hub" if r["sha256_checked"] else ""
        kept = f" Token kept in {hub_token.save(token)}." if token else ""
        _checkpoints(True)  # the WebUI's own checkpoint list shows the new file without a Rescan
        stored = (f"already in the store as '{r['name']}'" if r.get("deduplicated")
                  else f"uploaded as '{r['name']}' ({r['family']})")
        return f"Fetched {r['path']} ({got}{check}); {stored}. Pick it in Train Management.{kept}"

    for out in follow(task, "Fetching", done, progress):
        yield out, task.id


def render_fetch() -> None:
    """Get a base model: well-known bases fill the source in one click; any hub repo or https URL works too."""
    from ..assets import known_bases
    from ..assets.transfer import format_bytes

    with gr.Accordion("Get a base model", open=True, elem_id="cloudlora_fetch"):
        gr.Markdown("Download a base model from Hugging Face or any https link (Civitai's "
                    "`https://civitai.com/api/download/models/ID`) into the checkpoint folder, then upload it like "
                    "any checkpoint. Downloads resume where they stopped and are checked against the hub's sha256.")
        with gr.Row():
            buttons = [(b.key, gr.Button(f"{b.label} · {format_bytes(b.size + b.parts_size)}", size="sm",
                                         elem_id=f"cloudlora_base_{b.key.replace('-', '_')}"))
                       for b in known_bases.BASES]
        note = gr.Markdown(elem_id="cloudlora_fetch_note")
        with gr.Row():
            source = gr.Textbox(label="Hugging Face repo or https URL", placeholder="org/repo or https://…",
                                elem_id="cloudlora_fetch_source")
            file = gr.Textbox(label="File in the repo (optional)", placeholder="model.safetensors",
                              elem_id="cloudlora_fetch_file")
            name = gr.Textbox(label="Name in the store (optional)", elem_id="cloudlora_fetch_name")
        token = gr.Textbox(label="Hugging Face token (gated models only; kept in the OS keyring or the hub's token "
                                 "file, never in the settings)", type="password", elem_id="cloudlora_fetch_token")
        with gr.Row():
            fetch_button = gr.Button("Fetch model", variant="primary", elem_id="cloudlora_fetch_button")
            cancel_button = gr.Button("Cancel fetch", elem_id="cloudlora_fetch_cancel")
        progress = gr.HTML(elem_id="cloudlora_fetch_progress")
        task_id = gr.Textbox(visible=False)
    for c in (source, file, name, token, progress, task_id):
        c.do_not_save_to_config = True
    for key, button in buttons:
        button.click(lambda k=key: pick_base(k), None, [source, file, note])
    cancel_button.click(cancel_task, task_id, progress)
    return fetch_button.click(fetch, [source, file, name, token], [progress, task_id])


def render() -> None:
    from ..assets import models

    fetched = render_fetch()
    with gr.Accordion("Checkpoints", open=True, elem_id="cloudlora_checkpoints"):
        gr.Markdown("Upload a base model once; training jobs read it from the store. Uploads are resumable, "
                    "deduplicated by SHA-256, and the family is read from the file's header.")
        with gr.Row():
            in_webui = host.current().list_checkpoints is not None
            choice = gr.Dropdown(choices=list(_checkpoints()), label="WebUI checkpoint", visible=in_webui,
                                 elem_id="cloudlora_ckpt_choice")
            refresh = gr.Button("Rescan checkpoints", visible=in_webui, elem_id="cloudlora_ckpt_refresh")
            path = gr.Textbox(label="or a path on this machine", placeholder="/models/Stable-diffusion/x.safetensors",
                              elem_id="cloudlora_ckpt_path")
        with gr.Row():
            family = gr.Dropdown(choices=FAMILY_CHOICES, value=FAMILY_CHOICES[0], label="Family",
                                 elem_id="cloudlora_ckpt_family")
            name = gr.Textbox(label="Name in the store (optional)", elem_id="cloudlora_ckpt_name")
        with gr.Accordion("FLUX.1: separate text encoders and autoencoder", open=False,
                          elem_id="cloudlora_ckpt_flux_parts"):
            gr.Markdown("Only for a FLUX.1 checkpoint that holds the transformer alone (`flux1-dev.safetensors`); "
                        "an all-in-one file needs none. Paths on this machine.")
            with gr.Row():
                clip_l = gr.Textbox(label="CLIP-L", placeholder="models/text_encoder/clip_l.safetensors",
                                    elem_id="cloudlora_ckpt_clip_l")
                t5xxl = gr.Textbox(label="T5-XXL", placeholder="models/text_encoder/t5xxl_fp16.safetensors",
                                   elem_id="cloudlora_ckpt_t5xxl")
                ae = gr.Textbox(label="AE", placeholder="models/VAE/ae.safetensors", elem_id="cloudlora_ckpt_ae")
        with gr.Row():
            upload_button = gr.Button("Upload checkpoint", variant="primary", elem_id="cloudlora_ckpt_upload")
            cancel_button = gr.Button("Cancel upload", elem_id="cloudlora_ckpt_cancel")
        progress = gr.HTML(elem_id="cloudlora_ckpt_progress")
        task_id = gr.Textbox(visible=False)
        relist, listed = store_list.render(
            "ckpt", "model", LIST_HEADERS, model_rows, lambda n: models.delete_model(open_store(), n),
            lambda n: f"Delete **{n}** from the store? Jobs can no longer use it.")
    for c in (choice, path, family, name, progress, task_id, clip_l, t5xxl, ae):
        c.do_not_save_to_config = True

    refresh.click(lambda: gr.update(choices=list(_checkpoints(True))), None, choice)
    fetched.then(relist, None, listed)
    upload_button.click(upload, [choice, path, family, name, clip_l, t5xxl, ae], [progress, task_id]) \
        .then(relist, None, listed)
    cancel_button.click(cancel_task, task_id, progress)
