"""Train Management's Trainings List and job view: rows, the selected job's details, and its actions.

Thin handlers over cloudlora.jobs.service (the same functions as the CLI and REST); train_tab.py lays them out.
"""
from __future__ import annotations

import html

import gradio as gr

from .. import settings as settings_mod
from ..errors import UserError

LIST_HEADERS = ["ID", "LoRA", "Model", "Dataset", "Instance", "Status", "Step", "Elapsed", "Cost"]


def _settings():
    try:
        return settings_mod.resolve()
    except Exception:
        return settings_mod.Settings()


def list_rows():
    from ..jobs import service

    try:
        jobs = service.list_jobs(_settings())
    except Exception as err:
        return [[f"(cannot list jobs: {err})"] + [""] * (len(LIST_HEADERS) - 1)]
    rows = []
    for j in jobs:
        status = j["status"] + (f" · {j['secondary_status']}" if j["secondary_status"] and j["status"] != "Completed"
                                else "")
        rows.append([j["id"], j["lora_name"], j["model"], j["dataset"], j["instance_type"], status,
                     f"{j['step']}/{j['total_steps']}" if j["total_steps"] else "", j["elapsed"], j["cost"]])
    return rows or [[""] * len(LIST_HEADERS)]


def on_select(rows, evt: gr.SelectData):
    try:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        value = rows.values.tolist()[row][0] if hasattr(rows, "values") else rows[row][0]
    except Exception:
        return gr.update()
    return gr.update(value=value)


def job_details(job_id, picked=None):
    """(status md, log, loss plot, samples, explanation md, use-in-txt2img text, Stop/Delete/Pull/TensorBoard shown,
    the LoRA file picker, Resume shown)."""
    import pandas as pd

    from ..jobs import service

    empty_plot = pd.DataFrame({"step": [], "loss": [], "tag": []})
    if not job_id:
        return ("Select a job in the list.", "", gr.update(value=empty_plot), [], "", "",
                gr.update(visible=False), gr.update(visible=False), gr.update(visible=False), gr.update(visible=False),
                gr.update(visible=False, choices=[], value=None), gr.update(visible=False))
    try:
        j = service.get_job(job_id, _settings(), log_lines=80)
    except Exception as err:
        return (f"❌ {html.escape(str(err))}", "", gr.update(value=empty_plot), [], "", "",
                gr.update(visible=False), gr.update(visible=False), gr.update(visible=False), gr.update(visible=False),
                gr.update(visible=False, choices=[], value=None), gr.update(visible=False))
    parts = [f"**{html.escape(j['id'])}** — **{j['status']}**"]
    if j["secondary_status"]:
        parts.append(html.escape(j["secondary_status"]))
    if j["total_steps"]:
        parts.append(f"step {j['step']}/{j['total_steps']}")
    if j["elapsed"]:
        parts.append(f"elapsed {j['elapsed']}")
    cost = j["cost"]
    if cost not in ("", "-"):
        parts.append(f"cost {cost}")
    if j.get("best_epoch"):
        from ..jobs import best_epoch

        parts.append(html.escape(best_epoch.text(j["best_epoch"])))
    if j["pulled"]:
        parts.append("LoRA: " + ", ".join(f"`{p}`" for p in j["pulled"]))
    status = " · ".join(parts)
    explanation = ""
    if j.get("explanation"):
        e = j["explanation"]
        explanation = f"**Why it failed:** {html.escape(e['message'])}"
        if e.get("fix"):
            explanation += f"\n\n**Fix:** {html.escape(e['fix'])}"
        if e.get("raw") and e["raw"] != e["message"]:
            explanation += "\n\nDetails:\n\n```\n" + e["raw"][:2000] + "\n```"
    points = j["loss_points"]
    plot = pd.DataFrame({"step": [p["step"] for p in points], "loss": [p["loss"] for p in points],
                         "tag": [p["tag"] for p in points]}) if points else empty_plot
    samples = _gallery(j["samples"][-8:])
    name = (j["pulled"][-1].rsplit("/", 1)[-1].rsplit(".", 1)[0]) if j["pulled"] else j["lora_name"]
    use_text = f"<lora:{name}:1> " + ", ".join(j.get("triggers") or [])
    running = j["status"] not in ("Completed", "Failed", "Stopped")
    # The final LoRA and intermediate epoch files (NAME-000002.safetensors) can each be pulled.
    outputs = [o.rsplit("/", 1)[-1] for o in j.get("outputs") or []]
    final = f"{j['lora_name']}.safetensors" if f"{j['lora_name']}.safetensors" in outputs else \
        (outputs[-1] if outputs else None)
    return (status, "\n".join(j["log_tail"]), gr.update(value=plot), samples, explanation, use_text.strip(),
            gr.update(visible=running), gr.update(visible=not running),
            gr.update(visible=j["status"] == "Completed" or bool(outputs)), gr.update(visible=True),
            gr.update(visible=bool(outputs), choices=outputs, value=picked if picked in outputs else final),
            gr.update(visible=bool(j.get("resumable"))))


def _gallery(paths: list[str]):
    """PIL images, so gradio 4 (which serves only allowed folders) shows them too."""
    out = []
    try:
        from PIL import Image
    except ImportError:
        return paths
    for p in paths:
        try:
            with Image.open(p) as im:
                out.append(im.copy())
        except OSError:
            continue
    return out


def stop_job(job_id):
    from ..jobs import service

    return _action(lambda: service.stop_job(job_id, _settings())["message"], job_id)


def resume_job(job_id):
    from ..jobs import service

    return _action(lambda: service.resume_job(job_id, _settings())["message"].capitalize() + ".", job_id)


def delete_job(job_id):
    from ..jobs import service

    return _action(lambda: (service.delete_record(job_id, _settings()), f"Deleted the record of {job_id}.")[1],
                   job_id)


def pull_job(job_id, picked=None):
    from ..jobs import service

    return _action(lambda: service.pull_job(job_id, _settings(), file=picked or None)["message"], job_id)


def open_tensorboard(job_id):
    from ..jobs import tensorboard_server

    def go():
        url = tensorboard_server.open_for_job(job_id, _settings())
        return f"TensorBoard: [{url}]({url}) (on this machine only)"
    return _action(go, job_id)


def _action(fn, job_id) -> str:
    if not job_id:
        return "Select a job first."
    try:
        return fn()
    except UserError as err:
        return f"❌ {err.message}" + (f"\n\n**Fix:** {err.fix}" if err.fix else "")
    except Exception as err:
        return f"❌ {err}"


