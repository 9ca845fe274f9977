"""Train Management's job panel and Trainings List: the selected job's progress, log, loss curve and samples, and
its actions.

Thin handlers over cloudlora.jobs.service (the same functions as the CLI and REST); train_tab.py lays them out.
Refreshes change only what changed: a `seen` state remembers what the page already shows, so an unchanged log,
plot or gallery is not sent again (no re-render, no flicker), and the events run with gradio's progress hidden.
"""
from __future__ import annotations

import hashlib
import html
import threading
from collections import OrderedDict

import gradio as gr

from .. import host, settings as settings_mod
from ..errors import UserError
from . import newest, phase_view

LIST_HEADERS = ["ID", "LoRA", "Model", "Dataset", "Instance", "Status", "Step", "Elapsed", "Cost"]
_COLOURS = {"Completed": "#2e7d32", "Failed": "#c62828", "Stopped": "#757575"}
# What job_details returns, in order (train_tab.py wires the components in this order).
OUTPUTS = ("panel", "log", "plot", "samples", "explanation", "use_text", "stop", "delete", "pull", "tensorboard",
           "lora_file", "resume", "message", "use", "seen")
TERMINAL = ("Completed", "Failed", "Stopped")
NO_JOB = "<div class='cloudlora-job'>No job selected: create one above, or pick one in the Trainings List.</div>"


def _settings():
    try:
        return settings_mod.resolve()
    except Exception:
        return settings_mod.Settings()


def _digest(value) -> str:
    return hashlib.sha1(repr(value).encode("utf-8", "replace")).hexdigest()


def rows() -> list[list]:
    """The Trainings List: one row per job, its state said once (the step has its own column)."""
    from ..jobs.results import progress
    from ..jobs import service

    try:
        jobs = service.list_jobs(_settings())
    except Exception as err:
        return [[f"(cannot list jobs: {getattr(err, 'message', err)})"] + [""] * (len(LIST_HEADERS) - 1)]
    return [[j["id"], j["lora_name"], j["model"], j["dataset"], j["instance_type"], progress.state_text(j),
             f"{j['step']}/{j['total_steps']}" if j["total_steps"] else "", j["elapsed"], j["cost"]]
            for j in jobs] or [[""] * len(LIST_HEADERS)]


def list_rows(seen=None):
    """(table update, seen): the table is sent only when a row changed."""
    seen = dict(seen or {})
    data = rows()
    digest = _digest(data)
    if seen.get("rows") == digest:
        return gr.update(), seen
    seen["rows"] = digest
    return gr.update(value=data), seen


def on_select(rows, evt: gr.SelectData):
    try:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        value = rows.values.tolist()[row][0] if hasattr(rows, "values") else rows[row][0]
    except Exception:
        return gr.update()
    return gr.update(value=value) if value else gr.update()


def panel_html(j: dict) -> str:
    """The job in one block: which job, its state, a progress bar, and step x/y · it/s · time left · cost."""
    p = j["progress"]
    head = f"<b>{html.escape(j['id'])}</b> · LoRA <b>{html.escape(j['lora_name'])}</b> · " \
           f"<b class='cloudlora-state'>{html.escape(p['state'])}</b>"
    parts = [f"<div class='cloudlora-job-head'>{head}</div>"]
    if p["total"] or j["status"] == "Completed":
        pct = round(p["fraction"] * 100)
        colour = _COLOURS.get(j["status"], "#1976d2")
        parts.append(f"<div role='progressbar' aria-valuemin='0' aria-valuemax='{p['total']}' "
                     f"aria-valuenow='{p['step']}' class='cloudlora-bar' style='background:rgba(128,128,128,.25);"
                     f"border-radius:4px;height:10px;margin:6px 0'><div style='width:{pct}%;background:{colour};"
                     f"height:100%;border-radius:4px'></div></div>")
    if p["text"]:
        parts.append(f"<div class='cloudlora-facts'>{html.escape(p['text'])}</div>")
    if j.get("best_epoch"):
        from ..jobs.results import best_epoch

        parts.append(f"<div class='cloudlora-best-epoch'>{html.escape(best_epoch.text(j['best_epoch']))}</div>")
    if j["pulled"]:
        parts.append("<div>LoRA in the Lora folder: " + ", ".join(f"<code>{html.escape(x)}</code>"
                                                                  for x in j["pulled"]) + "</div>")
    return "<div class='cloudlora-job'>" + "".join(parts) + "</div>"


def log_html(lines: list[str]) -> str:
    """The log's tail in a box that stays scrolled to its last line (a column-reverse scroller starts at the end)."""
    body = "".join(f"<div class='cloudlora-log-line'>{html.escape(line) or '&nbsp;'}</div>" for line in lines)
    return ("<div class='cloudlora-log' style='display:flex;flex-direction:column-reverse;overflow:auto;"
            "height:16em;border:1px solid rgba(128,128,128,.35);border-radius:6px;padding:4px 8px;"
            "font-family:monospace;font-size:12px;white-space:pre-wrap'><div>" + (body or "(no log yet)") +
            "</div></div>")


def _explanation(j: dict) -> str:
    e = j.get("explanation")
    if not e:
        return ""
    text = f"**Why it failed:** {html.escape(e['message'])}"
    if e.get("fix"):
        text += f"\n\n**Fix:** {html.escape(e['fix'])}"
    if e.get("raw") and e["raw"] != e["message"]:
        text += "\n\nDetails:\n\n```\n" + e["raw"][:2000] + "\n```"
    return text


def _plot(points):
    import pandas as pd

    return pd.DataFrame({"step": [p["step"] for p in points], "loss": [p["loss"] for p in points],
                         "tag": [p["tag"] for p in points]})


# The job each page shows. A tick is queued with the Job ID the page had then; under a parallel queue (gradio 4,
# Forge) a tick queued just before Create or a click on another row can end after the new job was painted, and
# would paint the old job again for one tick. So a change of selection records the page's job, and a tick whose job
# is no longer its page's paints nothing.
_SHOWN: OrderedDict = OrderedDict()  # session hash -> job id, the newest few hundred pages
_SHOWN_LOCK = threading.Lock()
_SHOWN_MAX = 500


def selected_details(job_id, picked=None, seen=None, request: gr.Request = None):
    """job_details for a change of the Job ID (Create, a row clicked, Delete, typed): records it as the page's."""
    session = newest.session_of(request)
    if session:
        with _SHOWN_LOCK:
            _SHOWN[session] = job_id or ""
            _SHOWN.move_to_end(session)
            while len(_SHOWN) > _SHOWN_MAX:
                _SHOWN.popitem(last=False)
    return job_details(job_id, picked, seen)


def tick_details(job_id, picked=None, seen=None, request: gr.Request = None):
    """job_details for the refresh tick: nothing changes when the page has selected another job meanwhile."""
    def stale() -> bool:
        with _SHOWN_LOCK:
            shown = _SHOWN.get(newest.session_of(request))
        return shown is not None and shown != (job_id or "")

    nothing = [gr.update()] * (len(OUTPUTS) - 1) + [seen]
    if stale():
        return nothing
    answer = job_details(job_id, picked, seen)
    return nothing if stale() else answer


def _hidden_actions(message=None):
    """Stop, Delete, Pull, TensorBoard, the LoRA file picker and Resume hidden, the action message (kept unless
    `message`), Use in txt2img hidden."""
    return [gr.update(visible=False)] * 4 + [gr.update(visible=False, choices=[], value=None), gr.update(visible=False),
                                             gr.update() if message is None else gr.update(value=message),
                                             gr.update(visible=False)]


def _empty_plot():
    """No points yet: no plot at all (an empty frame made vega draw its axes from -Infinity to Infinity)."""
    return gr.update(value=None)


def job_details(job_id, picked=None, seen=None):
    """The parts named in OUTPUTS (panel, log, loss plot, samples, explanation, use-in-txt2img text,
    Stop/Delete/Pull/TensorBoard shown, the LoRA file picker, Resume shown, seen). Parts the page already shows are
    left as they are."""
    from ..jobs import service

    seen = dict(seen or {})
    # The action message (Stopping…, Pulled into…, Resumed…) speaks of one job at one moment: another job clears it
    # (but not "no job", which follows a Delete and keeps its "Deleted …"), and so does the job's end.
    other_job = seen.get("job") != job_id
    if other_job:  # another job: everything is new
        seen = {"job": job_id, "rows": seen.get("rows")}
    if not job_id:
        return [NO_JOB, log_html([]), _empty_plot(), [], "", ""] + _hidden_actions() + [seen]
    try:
        j = service.get_job(job_id, _settings(), log_lines=200)
    except Exception as err:
        message = getattr(err, "message", str(err))
        return ([f"<div class='cloudlora-job'>✗ {html.escape(message)}</div>", log_html([]),
                 _empty_plot(), [], "", ""] + _hidden_actions("" if other_job else None) + [seen])

    def changed(part: str, value) -> bool:
        digest = _digest(value)
        if seen.get(part) == digest:
            return False
        seen[part] = digest
        return True

    log = gr.update(value=log_html(j["log_tail"])) if changed("log", j["log_tail"]) else gr.update()
    points = j["loss_points"]
    plot = (gr.update(value=_plot(points)) if points else _empty_plot()) \
        if changed("plot", [(p["step"], p["tag"]) for p in points]) else gr.update()
    sample_paths = j["samples"][-8:]
    labels = (j.get("sample_labels") or [])[-8:]  # epoch · step · seed · prompt (jobs/outputs.sample_info)
    samples = _gallery(sample_paths, labels) if changed("samples", [sample_paths, labels]) else gr.update()
    name = (j["pulled"][-1].rsplit("/", 1)[-1].rsplit(".", 1)[0]) if j["pulled"] else j["lora_name"]
    use_text = (f"<lora:{name}:1> " + ", ".join(j.get("triggers") or [])).strip()
    running = j["status"] not in TERMINAL
    ended_now = seen.get("running") and not running  # it ended while shown: "Stopping the trainer…" is over
    seen["running"] = running
    message = gr.update(value="") if other_job or ended_now else gr.update()
    # The final LoRA and intermediate epoch files (NAME-000002.safetensors) can each be pulled.
    outputs = [o.rsplit("/", 1)[-1] for o in j.get("outputs") or []]
    final = f"{j['lora_name']}.safetensors" if f"{j['lora_name']}.safetensors" in outputs else \
        (outputs[-1] if outputs else None)
    # TensorBoard only when there is something to look at; Use in txt2img only for a LoRA that was made.
    return [panel_html(j), log, plot, samples, _explanation(j) + phase_view.section(j), use_text,
            gr.update(visible=running), gr.update(visible=not running),
            gr.update(visible=j["status"] == "Completed" or bool(outputs)), gr.update(visible=bool(points)),
            gr.update(visible=bool(outputs), choices=outputs, value=picked if picked in outputs else final),
            gr.update(visible=bool(j.get("resumable"))), message,
            gr.update(visible=_in_webui() and j["status"] == "Completed"), seen]


def _in_webui() -> bool:
    try:
        return host.current().in_webui
    except Exception:
        return False


def _gallery(paths: list[str], labels: list[str] | None = None):
    """PIL images, so gradio 4 (which serves only allowed folders) shows them too; captioned when labelled."""
    out = []
    try:
        from PIL import Image
    except ImportError:
        return paths
    labels = list(labels or []) + [""] * len(paths)
    for p, label in zip(paths, labels):
        try:
            with Image.open(p) as im:
                out.append((im.copy(), label) if label else im.copy())
        except OSError:
            continue
    return out


def stop_job(job_id):
    from ..jobs import service

    return _action(lambda: service.stop_job(job_id, _settings())["message"], job_id)


def resume_job(job_id):
    from ..jobs import service

    return _action(lambda: service.resume_job(job_id, _settings())["message"].capitalize() + ".", job_id)


def ask_delete(job_id):
    if not job_id:
        return gr.update(visible=False), "Select a job first."
    return gr.update(visible=True), (f"Delete the record of **{html.escape(job_id)}** and its files in the store? "
                                     "A LoRA already in the Lora folder stays.")


def delete_job(job_id):
    """(confirmation row, message, selected job): after the delete nothing is selected, so nothing else is said."""
    from ..jobs import service

    message = _action(lambda: (service.delete_record(job_id, _settings()), f"Deleted the record of {job_id}.")[1],
                      job_id)
    deleted = message.startswith("Deleted")
    return gr.update(visible=False), message, (gr.update(value="") if deleted else gr.update())


def pull_job(job_id, picked=None):
    from ..jobs import service

    return _action(lambda: service.pull_job(job_id, _settings(), file=picked or None)["message"], job_id)


def open_tensorboard(job_id):
    from ..jobs import service

    def go():
        url = service.open_tensorboard(job_id, _settings())
        return f"TensorBoard: [{url}]({url}) (on this machine only)"
    return _action(go, job_id)


def _action(fn, job_id) -> str:
    if not job_id:
        return "Select a job first."
    try:
        return fn()
    except UserError as err:
        return f"✗ {err.message}" + (f"\n\n**Fix:** {err.fix}" if err.fix else "")
    except Exception as err:
        return f"✗ {type(err).__name__}: {err}"


def newest_job(jobs: list[dict]) -> str:
    """The job to show on opening the tab: the newest one still running, else the newest one (jobs come newest
    first)."""
    active = [j for j in jobs if j.get("status") not in TERMINAL]
    running = [j for j in active if j.get("status") not in ("Created", "Queued")]  # before one waiting its turn
    return (running or active or jobs or [{}])[0].get("id", "")


def opening(model, dataset, fm_label, instance_label, selected=""):
    """On opening (or reopening) the tab: follow the newest running job, else the newest one, and show its settings in
    the form, so that closing the tab mid-job loses nothing. Without a job, only the Model and Dataset lists are
    refreshed (the user's FM Type kept). Returns [selected, model, dataset, FM Type, instance, LoRA name, config,
    *fields, synced fields] (train_tab.py wires them in this order)."""
    from ..jobs.sagemaker_backend import instances
    from ..jobs import service
    from . import train_form as form

    keep = [gr.update() for _ in form.KNOBS] + [gr.update()]
    try:
        jobs = service.list_jobs(_settings())
    except Exception:
        jobs = []
    job_id = (selected or "").strip() or newest_job(jobs)
    job = next((j for j in jobs if j["id"] == job_id), None)
    if job is None:
        return [gr.update(), *form.refresh_choices(model, dataset, fm_label)] + [gr.update()] * 4 + keep
    try:
        config = service.get_job(job_id, _settings(), log_lines=1)["config"]
    except Exception:
        config = None
    models, datasets = form.names("models"), form.names("datasets")
    inst = instances.get(job.get("instance_type") or "")
    fields = form.knob_values_synced(config) if config else keep
    return [gr.update(value=job_id),
            gr.update(choices=models, value=job["model"] if job["model"] in models else None),
            gr.update(choices=datasets, value=job["dataset"] if job["dataset"] in datasets else None),
            gr.update(value=form.label_of_family(job.get("family") or "sd15")),
            form.instance_update(job.get("family") or "sd15", inst.describe() if inst else instance_label),
            gr.update(value=job["lora_name"]), gr.update(value=config) if config else gr.update()] + fields
