"""The Datasets panel: source (folder, .zip, dropped images + trigger), Validate → report and gallery, captions
(edit, review and Caption: ui/captions_panel.py), optional prepared copy, auto-caption (inside A1111 only), upload with progress, list, delete with confirmation.

Only components and wiring: the work is cloudlora.assets (dataset_check, dataset_import, dataset_prepare, datasets),
the same functions as the CLI and REST; long work runs as a background task that the handlers poll.
The folders and files the handlers act on (the validated dataset root, its images) are gr.State: they live on the
server, set by the server's own Validate/Prepare, and a client cannot send others (ui/access.py keeps strangers out).
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from ..errors import UserError
from . import captions_panel, store_list
from .checkpoints_panel import cancel_task, error_html, esc, follow, open_store

SOURCES = ["Folder on this machine", "Zip file", "Images + trigger word"]
LIST_HEADERS = ["Name", "Images", "Per epoch", "Triggers", "Size", "Created"]
GALLERY_MAX = 200
_zip_roots: dict[str, str] = {}  # an uploaded zip is extracted once, not on every Validate
_built: dict[str, str] = {}  # dropped images + trigger + repeats -> the folder built from them


def _path_of(f) -> str:
    return str(getattr(f, "name", f) or "")


def resolve_source(source, folder, zip_file, images, trigger, repeats) -> Path:
    from ..assets import dataset_import

    if source == SOURCES[1]:
        if not zip_file:
            raise UserError("No zip file was given.", "Drop a .zip of the dataset folder.")
        z = _path_of(zip_file)
        if z not in _zip_roots or not Path(_zip_roots[z]).is_dir():  # (an unused import is cleaned after a day)
            _zip_roots[z] = str(dataset_import.import_zip(z))
        return Path(_zip_roots[z])
    if source == SOURCES[2]:
        files = [_path_of(f) for f in (images or [])]
        key = repr((files, trigger, repeats))  # the same drop validated twice builds one folder
        if key not in _built or not Path(_built[key]).is_dir():
            _built[key] = str(dataset_import.from_images(files, trigger, repeats or 0))
        return Path(_built[key])
    if not (folder or "").strip():
        raise UserError("No folder was given.", "Give the dataset folder (holding e.g. 10_mytrigger/).")
    return Path(folder.strip()).expanduser()


def report_html(report) -> str:
    s = report.summary
    kind = esc(report.kind or "not laid out for training yet")
    parts = [f"<div id='cloudlora_ds_report_body'><b>{esc(report.root)}</b> ({kind})"]
    if s and not report.kind:
        parts.append(f"<br>{s.get('images_seen', 0)} image(s) seen; training would read none of them as it is.")
    elif s:
        parts.append(f"<br>{s['images']} images, {s['captions']} captions, <b>{s['images_per_epoch']}</b> images × "
                     f"repeats per epoch; triggers: {esc(', '.join(s.get('triggers', [])))}")
        subsets = "".join(f"<li>{esc(x['folder'])}: {x['images']} images × {x['repeats']} repeats, trigger "
                          f"'{esc(x['trigger'])}'</li>" for x in s.get("subsets", []))
        parts.append(f"<ul>{subsets}</ul>")
    for level, items in (("error", report.errors), ("warning", report.warnings)):
        if items:
            rows = "".join(f"<li><code>{esc(f.path or '.')}</code>: {esc(f.message)}"
                           f"{(' <i>Fix: ' + esc(f.fix) + '</i>') if f.fix else ''}</li>" for f in items)
            parts.append(f"<div class='cloudlora-{level}s'><b>{len(items)} {level}(s)</b><ul>{rows}</ul></div>")
    parts.append("<b>✓ Ready to upload.</b>" if report.ok else "<b>✗ Fix the errors before uploading.</b>")
    return "".join(parts) + "</div>"


def gallery(report) -> list:
    from PIL import Image

    out = []
    for item in report.items[:GALLERY_MAX]:
        try:
            with Image.open(item["image"]) as img:
                img.thumbnail((256, 256))
                thumb = img.convert("RGB")
        except Exception:  # noqa: BLE001 - a broken image is in the report already
            continue
        out.append((thumb, item["caption"] or f"(no caption: '{item['trigger']}')"))
    return out


def validate(source, folder, zip_file, images, trigger, repeats):
    """-> report html, gallery, root, image paths, default name."""
    from ..assets.dataset_check import check_dataset
    from ..assets.models import safe_name

    try:
        root = resolve_source(source, folder, zip_file, images, trigger, repeats)
        report = check_dataset(root)
    except Exception as err:  # noqa: BLE001
        return error_html(err), [], "", [], gr.update()
    paths = [i["image"] for i in report.items[:GALLERY_MAX]]
    return report_html(report), gallery(report), report.root, paths, safe_name(Path(report.root).name, "dataset")


def revalidate(root):
    from ..assets.dataset_check import check_dataset

    if not root:
        return "", [], []
    report = check_dataset(root)
    return report_html(report), gallery(report), [i["image"] for i in report.items[:GALLERY_MAX]]


def wrap_offer(root):
    """The Wrap row shows when the images lie loose in the folder (no <repeats>_<trigger> folder to read)."""
    from cloudlora_backend.trainer.data import layout as L

    from ..assets.dataset_check import images_in, suggest_subset_name

    folder = Path(root) if root else None
    if folder is None or not folder.is_dir() or L.looks_like_subset(folder) or not images_in(folder) or \
            any(L.looks_like_subset(d) for d in folder.iterdir()):
        return gr.update(visible=False), gr.update()
    repeats, trigger = suggest_subset_name(folder.name).split("_", 1)
    return gr.update(visible=True), gr.update(value=trigger)


def wrap(root, trigger, repeats):
    """-> work status, the new root (a copy laid out as <repeats>_<trigger>/), the Wrap row hidden."""
    from ..assets.dataset_import import wrap_folder

    try:
        new_root = wrap_folder(root, trigger=(trigger or "").strip() or None, repeats=repeats or None)
    except Exception as err:  # noqa: BLE001 - shown, never a stack trace
        return error_html(err), gr.update(), gr.update()
    return (f"✓ Wrapped: the dataset is now the copy `{esc(str(new_root))}` (your folder is unchanged).",
            str(new_root), gr.update(visible=False))


def select_image(paths, root, evt: gr.SelectData):
    from ..assets import dataset_prepare

    try:
        image = paths[evt.index]
        return image, dataset_prepare.read_caption(root, image), f"Editing the caption of `{Path(image).name}`"
    except (IndexError, TypeError):
        return "", "", ""
    except UserError as err:
        return paths[evt.index], "", err.message


def save_caption(root, paths, image, text):
    from ..assets import dataset_prepare

    if not image:
        return "Click an image in the gallery first.", gr.update(), gr.update()
    if not root or image not in (paths or []):  # only an image this server listed for the validated dataset
        return "✗ Validate the dataset again, then pick the image.", gr.update(), gr.update()
    try:
        path = dataset_prepare.write_caption(root, image, text)
    except UserError as err:
        return f"✗ {err.message}", gr.update(), gr.update()
    report_, _gallery, _paths = revalidate(root)
    return f"✓ Saved `{path.name}`.", report_, _gallery


def prepare(root, family):
    from ..assets import dataset_prepare, tasks

    if not root:
        yield "Validate a dataset first.", root
        return
    task = tasks.start("prepare", dataset_prepare.prepare, root, family)
    for out in follow(task, "Preparing a resized copy", lambda r: f"Prepared copy: {r}"):
        yield out, root
    if task.exception() is None:
        yield f"✓ Prepared copy in `{task.result()}` (your originals are unchanged); it is now the dataset.", \
            str(task.result())


def autocaption(root):
    from ..assets import dataset_prepare, tasks

    if not root:
        yield "Validate a dataset first."
        return
    task = tasks.start("auto-caption", dataset_prepare.autocaption, root)
    yield from follow(task, "Captioning", lambda r: f"Captioned {len(r)} image(s).")


def upload(root, name, progress=gr.Progress()):
    from ..assets import datasets, tasks

    if not root:
        yield "<div class='cloudlora-error'>✗ Validate a dataset first.</div>", ""
        return
    try:
        datasets.check_or_raise(root)
        task = tasks.start("dataset upload", datasets.upload_dataset, open_store(), root,
                           name=(name or "").strip() or None)
    except Exception as err:  # noqa: BLE001
        yield error_html(err), ""
        return

    def done(r: dict) -> str:
        note = f" {r['rename_note']}" if r.get("rename_note") else ""  # NAME-2: said, never silent
        if r["deduplicated"]:
            return f"Dataset '{r['name']}' is already in the store, unchanged: 0 bytes sent.{note}"
        return (f"Uploaded dataset '{r['name']}': {r['files_sent']} file(s) sent, {r['files_skipped']} already "
                f"there.{note}")

    for out in follow(task, "Uploading the dataset", done, progress):
        yield out, task.id


def dataset_rows() -> tuple[list[list], str]:
    from ..assets import datasets
    from ..assets.manifests import broken_text
    from ..assets.transfer import format_bytes

    broken: list = []
    try:
        store = open_store()
        items = datasets.list_datasets(store, broken)
    except Exception as err:  # noqa: BLE001
        return [], f"Could not list the store: {getattr(err, 'message', err)}"
    rows = [[d["name"], d.get("images", ""), d.get("images_per_epoch", ""), ", ".join(d.get("triggers", [])),
             format_bytes(int(d.get("size", 0))), d.get("created", "")] for d in items]
    total = sum(int(d.get("size", 0)) for d in items)
    note = f"\n\n⚠️ {broken_text(broken, 'dataset')}" if broken else ""
    return rows, f"{len(items)} dataset(s), {format_bytes(total)} in `{store.uri('datasets/')}`{note}"


def _delete_dataset(name: str) -> int:
    from ..assets import datasets

    return datasets.delete_dataset(open_store(), name)


def default_family() -> str:
    """"Prepare for" starts at the family of the newest model in the store (what the dataset will train), else
    SD 1.5: never SDXL for someone whose models are all SD 1.5."""
    try:
        from ..assets.models import list_models

        models = [m for m in list_models(open_store()) if m.get("family") in ("sd15", "sdxl")]
    except Exception:  # noqa: BLE001 - an unreachable store: the safe default
        return "sd15"
    return max(models, key=lambda m: m.get("created") or "")["family"] if models else "sd15"


def render() -> None:
    from ..assets import dataset_prepare

    with gr.Accordion("Datasets", open=True, elem_id="cloudlora_datasets"):
        gr.Markdown("A Kohya dataset: folders named `<repeats>_<trigger>` (e.g. `10_mychar`) with images and "
                    "`.txt` captions. Validate it, fix what the report says, then upload.")
        source = gr.Radio(SOURCES, value=SOURCES[0], label="Source", elem_id="cloudlora_ds_source")
        folder = gr.Textbox(label="Dataset folder on this machine", placeholder="/data/mychar (holding 10_mychar/)",
                            elem_id="cloudlora_ds_folder")
        zip_file = gr.File(label="Dataset .zip", file_types=[".zip"], visible=False, elem_id="cloudlora_ds_zip")
        with gr.Row(visible=False) as images_row:
            images = gr.File(label="Images", file_count="multiple", file_types=["image"],
                             elem_id="cloudlora_ds_images")
            trigger = gr.Textbox(label="Trigger word", placeholder="mychar", elem_id="cloudlora_ds_trigger")
            repeats = gr.Number(value=10, precision=0, label="Repeats", elem_id="cloudlora_ds_repeats")
        validate_button = gr.Button("Validate", variant="primary", elem_id="cloudlora_ds_validate")
        report = gr.HTML(elem_id="cloudlora_ds_report")
        with gr.Row(visible=False) as wrap_row:
            wrap_trigger = gr.Textbox(label="Trigger word", elem_id="cloudlora_ds_wrap_trigger")
            wrap_repeats = gr.Number(value=10, precision=0, label="Repeats", elem_id="cloudlora_ds_wrap_repeats")
            wrap_button = gr.Button("Wrap the images in <repeats>_<trigger>/ (a copy)", elem_id="cloudlora_ds_wrap")
        root = gr.State("")  # the validated dataset folder, on the server
        paths = gr.State([])  # its images, as the server listed them
        pictures = gr.Gallery(label="Dataset (click an image to edit its caption)", columns=6,
                              elem_id="cloudlora_ds_gallery")
        with gr.Row():
            image = gr.State("")  # the picked image: one of `paths`
            caption = gr.Textbox(label="Caption", lines=2, elem_id="cloudlora_ds_caption")
            save_button = gr.Button("Save caption", elem_id="cloudlora_ds_save_caption")
        caption_status = gr.Markdown(elem_id="cloudlora_ds_caption_status")
        review, review_outputs, caption_events = captions_panel.render(root)
        with gr.Row():
            family = gr.Radio(["sd15", "sdxl"], value=default_family, label="Prepare for",
                              elem_id="cloudlora_ds_family")
            prepare_button = gr.Button("Prepare a resized copy (originals unchanged)", elem_id="cloudlora_ds_prepare")
            caption_button = gr.Button("Auto-caption images without a caption",
                                       visible=dataset_prepare.can_autocaption(), elem_id="cloudlora_ds_autocaption")
        work_status = gr.HTML(elem_id="cloudlora_ds_work")
        with gr.Row():
            name = gr.Textbox(label="Name in the store", elem_id="cloudlora_ds_name")
            upload_button = gr.Button("Upload dataset", variant="primary", elem_id="cloudlora_ds_upload")
            cancel_button = gr.Button("Cancel upload", elem_id="cloudlora_ds_cancel")
        progress = gr.HTML(elem_id="cloudlora_ds_progress")
        task_id = gr.Textbox(visible=False)
        relist, listed = store_list.render("ds", "dataset", LIST_HEADERS, dataset_rows, _delete_dataset,
                                           lambda n: f"Delete dataset **{n}** from the store?")
    for c in (source, folder, zip_file, images, trigger, repeats, report, pictures, caption,
              caption_status, family, work_status, name, progress, task_id, wrap_trigger, wrap_repeats):
        c.do_not_save_to_config = True

    def show_source(choice):
        return (gr.update(visible=choice == SOURCES[0]), gr.update(visible=choice == SOURCES[1]),
                gr.update(visible=choice == SOURCES[2]))

    source.change(show_source, source, [folder, zip_file, images_row])
    validate_button.click(validate, [source, folder, zip_file, images, trigger, repeats],
                          [report, pictures, root, paths, name]).then(wrap_offer, root, [wrap_row, wrap_trigger]) \
        .then(review, root, review_outputs)
    wrap_button.click(wrap, [root, wrap_trigger, wrap_repeats], [work_status, root, wrap_row]) \
        .then(revalidate, root, [report, pictures, paths]).then(review, root, review_outputs)
    pictures.select(select_image, [paths, root], [image, caption, caption_status])
    save_button.click(save_caption, [root, paths, image, caption], [caption_status, report, pictures]) \
        .then(review, root, review_outputs)
    for event in caption_events:  # the gallery shows the captions: refreshed after every change
        event.then(revalidate, root, [report, pictures, paths])
    prepare_button.click(prepare, [root, family], [work_status, root]).then(revalidate, root,
                                                                            [report, pictures, paths]) \
        .then(review, root, review_outputs)
    caption_button.click(autocaption, root, work_status).then(revalidate, root, [report, pictures, paths]) \
        .then(review, root, review_outputs)
    upload_button.click(upload, [root, name], [progress, task_id]).then(relist, None, listed)
    cancel_button.click(cancel_task, task_id, progress)
