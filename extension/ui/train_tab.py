"""Train Management: pick instance, FM type, model, dataset and config; create the job; follow the Trainings List.

Gradio components and thin handlers only; every action calls cloudlora.jobs.service (the same functions as the
CLI and REST). Written for gradio 3.41 and 4.40 (gr.update, `_js`, no .style / gr.Box / concurrency_limit).
"""
from __future__ import annotations

import html
import time

import gradio as gr

from .. import host
from .. import settings as settings_mod
from ..errors import UserError
from ..jobs import flux, instances
from . import continue_panel, epochs_panel, lora_cards, train_jobs

FM_LABELS = {"SD 1.5": "sd15", "SDXL": "sdxl", "FLUX.1": "flux"}
CONTAINER_LABELS = {"Cloud LoRA trainer image": "cloudlora", "Kohya sample container": "kohya-sample"}
KNOBS = ["max_train_steps", "max_train_epochs", "network_dim", "network_alpha", "learning_rate", "resolution",
         "sample_prompts"]
REFRESH_S = 3


def _label_of_family(family: str) -> str:
    return next((k for k, v in FM_LABELS.items() if v == family), "SD 1.5")


def instance_value(label: str) -> str:
    """'ml.g5.xlarge · NVIDIA A10G 24 GB · ~$1.41/h' -> 'ml.g5.xlarge'; 'Local (this machine)' -> 'local'."""
    if not label or label.startswith("Local"):
        return instances.LOCAL
    return label.split(" · ")[0].strip()


def _instance_labels() -> list[str]:
    return [i.describe() for i in instances.CATALOGUE]


def _default_instance_label() -> str:
    s = _settings()
    if s.effective_backend == "sagemaker":
        inst = instances.get(s.instance_type)
        if inst:
            return inst.describe()
    return instances.CATALOGUE[0].describe()


def _settings():
    try:
        return settings_mod.resolve()
    except Exception:
        return settings_mod.Settings()


def _store():
    from ..store import open_store

    return open_store(_settings())


def _list_manifests(kind: str) -> list[dict]:
    try:
        store = _store()
        if kind == "models":
            from ..assets.models import list_models

            return list_models(store)
        try:
            from ..assets.datasets import list_datasets
        except ImportError:
            list_datasets = None
        if list_datasets:
            return list_datasets(store)
        import json

        return [json.loads(store.get_bytes(o.key)) for o in store.list("datasets/")
                if o.key.count("/") == 2 and o.key.endswith("/manifest.json")]
    except Exception:  # an unreachable store shows as an empty list; the status line says why on submit
        return []


def _names(kind: str) -> list[str]:
    return [m.get("name", "") for m in _list_manifests(kind) if m.get("name")]


def _default_config(family: str) -> str:
    from cloudlora_backend.trainer.config import default_toml

    return default_toml(family)


def _knob_initial(text: str) -> dict:
    from ..jobs.estimate import flatten

    flat = flatten(text)
    return {k: ", ".join(map(str, flat[k])) if isinstance(flat.get(k), list) else str(flat.get(k, "") or "")
            for k in KNOBS}


def _knob_values(text: str) -> list:
    from ..jobs.estimate import flatten

    try:
        flat = flatten(text)
    except Exception:
        return [gr.update() for _ in KNOBS]
    out = []
    for key in KNOBS:
        v = flat.get(key)
        if isinstance(v, list):
            v = ", ".join(str(x) for x in v)
        out.append(gr.update(value="" if v is None else str(v)))
    return out


# --- handlers (thin: the logic lives in jobs/service and the trainer's config module) --------------------------

def on_instance(label):
    sagemaker = instance_value(label) != instances.LOCAL
    return [gr.update(visible=sagemaker)] * 2


def on_container(container_label):
    return gr.update(visible=CONTAINER_LABELS.get(container_label) == "kohya-sample")


def fm_labels() -> list[str]:
    """The FM Types offered in this host: FLUX.1 only where its LoRAs can be used (Forge, the standalone app)."""
    return [k for k, v in FM_LABELS.items() if v != "flux" or flux.offered(host.current().name)[0]]


def instance_update(family: str, instance_label):
    """The instance list for the family: for FLUX.1 only the types with enough GPU and host memory."""
    labels = [label for label, _v in flux.instance_choices()] if family == "flux" else _instance_labels()
    current = instance_value(instance_label or "")
    value = next((lb for lb in labels if instance_value(lb) == current), labels[0])
    return gr.update(choices=labels, value=value)


def on_model(model, fm_label, config_text, instance_label=None):
    """FM Type follows the model; the config is re-prefilled only when it is still the other family's defaults."""
    family = FM_LABELS.get(fm_label, "sd15")
    for m in _list_manifests("models"):
        if m.get("name") == model and m.get("family") in FM_LABELS.values():
            family = m["family"]
    if FM_LABELS.get(fm_label) != family and _label_of_family(family) not in fm_labels():
        note = f"'{model}' is a {_label_of_family(family)} model, which is not offered here: {flux.A1111_REASON}"
        return [gr.update(), gr.update(), note] + [gr.update() for _ in KNOBS] + [gr.update()]
    return _switch_family(family, fm_label, config_text, instance_label)


def on_family(fm_label, config_text, instance_label=None):
    return _switch_family(FM_LABELS.get(fm_label, "sd15"), None, config_text, instance_label)


def _switch_family(family, old_label, config_text, instance_label=None):
    """FM Type shows `family`; the config becomes that family's defaults only while it is some family's untouched
    defaults (an edited config is kept, with a note when the family changed). Nothing else is rewritten, so a late
    model-change event cannot undo the user's edits. The instance list follows the family."""
    keep = [gr.update() for _ in KNOBS]
    label = gr.update(value=_label_of_family(family))
    inst = instance_update(family, instance_label)
    current = next((f for f in FM_LABELS.values() if config_text == _default_config(f)), None)
    if current == family:
        return [label, gr.update(), gr.update()] + keep + [inst]
    if current is None and (config_text or "").strip():
        changed = old_label is None or FM_LABELS.get(old_label) != family
        note = (f"FM Type is now {_label_of_family(family)}; your edited config was kept (check its resolution)."
                if changed else gr.update())
        return [label, gr.update(), note] + keep + [inst]
    text = _default_config(family)
    return [label, gr.update(value=text), ""] + _knob_values(text) + [inst]


def on_dataset(dataset, lora_name):
    triggers = []
    for d in _list_manifests("datasets"):
        if d.get("name") == dataset:
            triggers = d.get("triggers") or []
    shown = ", ".join(f"`{t}`" for t in triggers) or "(none)"
    name = lora_name or dataset or ""
    return gr.update(value=f"Trigger word(s): {shown}" if dataset else ""), gr.update(value=name)


def refresh_choices(model, dataset):
    models, datasets = _names("models"), _names("datasets")
    return (gr.update(choices=models, value=model if model in models else (models[0] if models else None)),
            gr.update(choices=datasets, value=dataset if dataset in datasets else (datasets[0] if datasets else None)))


def format_config(config_text, fm_label):
    from cloudlora_backend.trainer import config as kohya_config

    family = FM_LABELS.get(fm_label, "sd15")
    report = kohya_config.check(config_text or "", family)
    if report.errors:
        lines = ["**The config has problems:**"] + [f"- ❌ {html.escape(e)}" for e in report.errors]
        lines += [f"- ⚠️ {html.escape(w)}" for w in report.warnings]
        return gr.update(), "\n".join(lines)
    text = kohya_config.format_toml(config_text, family)
    msg = "✅ Valid and normalised." + "".join(f"\n- ⚠️ {html.escape(w)}" for w in report.warnings)
    return gr.update(value=text), msg


def set_knob(key):
    def handler(value, config_text):
        from cloudlora_backend.trainer import config as kohya_config

        if value in (None, "") or not (config_text or "").strip():
            return gr.update(), gr.update()
        try:
            return gr.update(value=kohya_config.set_keys(config_text, {key: value})), ""
        except Exception as err:  # ConfigError or TOML error: shown inline, the text is left as it was
            return gr.update(), f"❌ {key}: {html.escape(str(err))}"
    return handler


def estimate_text(config_text, fm_label, dataset, instance_label, spot):
    from ..jobs import service

    backend = "local" if instance_value(instance_label) == instances.LOCAL else "sagemaker"
    try:
        est = service.estimate_job(config=config_text or "", family=FM_LABELS.get(fm_label, "sd15"),
                                   dataset=dataset or "", instance_type=instance_value(instance_label),
                                   backend=backend, spot=bool(spot))
    except Exception as err:  # a half-typed config: say so instead of an estimate
        return f"Estimate: unavailable ({html.escape(str(err).splitlines()[0])})"
    return f"**Estimate:** {html.escape(est['summary'])}"


def create_job(instance_label, fm_label, model, dataset, lora_name, config_text, spot, max_wait_h, max_runtime_h,
               container_label, image_uri, token, continue_choice=None):
    from ..jobs import service
    from ..jobs.spec import JobSpec

    instance = instance_value(instance_label)
    backend = "local" if instance == instances.LOCAL else "sagemaker"
    spec = JobSpec(model=model or "", dataset=dataset or "", family=FM_LABELS.get(fm_label, "sd15"),
                   config=config_text or "", lora_name=(lora_name or "").strip(), backend=backend,
                   instance_type=instance, spot=bool(spot) and backend == "sagemaker",
                   max_wait_s=int(float(max_wait_h or 48) * 3600), max_runtime_s=int(float(max_runtime_h or 24) * 3600),
                   container=CONTAINER_LABELS.get(container_label, "cloudlora"), image_uri=(image_uri or "").strip(),
                   client_token=token, continue_from=continue_panel.value_of(continue_choice))
    from ..jobs.records import TokenReused
    from ..jobs.spec import new_client_token

    try:
        job = service.create_job(spec, _settings())
    except TokenReused as err:  # this form already made a job (its answer was lost): the next click makes a new one
        return (f"❌ This form already created job `{html.escape(err.job_id)}` with other settings. Press Create "
                "again to create another job."), new_client_token(), gr.update(value=err.job_id)
    except UserError as err:
        msg = f"❌ {html.escape(err.message)}".replace("\n", "<br>")
        if err.fix:
            msg += f"<br>**Fix:** {html.escape(err.fix)}"
        return msg, token, gr.update()
    except Exception as err:  # never a stack trace in the tab
        return f"❌ The job could not be created: {html.escape(str(err))}", token, gr.update()
    verb = "Created" if job.get("created", True) else "Already created"
    warn = "".join(f"<br>⚠️ {html.escape(w)}" for w in job.get("warnings") or [])
    # A new token only after success: a second click of the same form finds the same job.
    return f"✅ {verb} job `{job['id']}` ({job['status']}).{warn}", new_client_token(), gr.update(value=job["id"])


# --- layout ---------------------------------------------------------------------------------------------------------

def build() -> gr.Blocks:
    from ..jobs.spec import new_client_token

    in_webui = host.current().in_webui
    default_family = "sd15"
    default_text = _default_config(default_family)
    with gr.Blocks(analytics_enabled=False) as tab:
        token = gr.State(value=new_client_token)
        with gr.Row():
            instance = gr.Dropdown(_instance_labels(), value=_default_instance_label, label="Training Instance Type",
                                   elem_id="cloudlora_instance")
            fm_type = gr.Radio(fm_labels(), value=_label_of_family(default_family), label="FM Type",
                               elem_id="cloudlora_fm_type")
            flux_ok, flux_why = flux.offered(host.current().name)
            if not flux_ok:  # shown, but off: the reason says where FLUX.1 LoRAs can be trained and used
                gr.Checkbox(value=False, label="FLUX.1", interactive=False, info=flux_why,
                            elem_id="cloudlora_fm_flux_unavailable")
        with gr.Row():
            model = gr.Dropdown(choices=_names("models"), label="Model", elem_id="cloudlora_train_model")
            dataset = gr.Dropdown(choices=_names("datasets"), label="Dataset", elem_id="cloudlora_train_dataset")
            refresh = gr.Button("🔄 Refresh", elem_id="cloudlora_train_refresh")
        with gr.Row():
            lora_name = gr.Textbox(label="LoRA name", placeholder="mydog_v1", elem_id="cloudlora_lora_name")
            trigger_md = gr.Markdown(elem_id="cloudlora_trigger")
        continue_from = continue_panel.render()
        with gr.Row(visible=False) as sagemaker_row:
            spot = gr.Checkbox(value=True, label="Spot (up to ~70 % cheaper; resumes after interruptions)",
                               elem_id="cloudlora_spot")
            max_wait = gr.Number(value=48, label="Max wait (hours, spot)", elem_id="cloudlora_max_wait")
            max_runtime = gr.Number(value=24, label="Max runtime (hours)", elem_id="cloudlora_max_runtime")
            container = gr.Dropdown(list(CONTAINER_LABELS), value="Cloud LoRA trainer image", label="Container",
                                    elem_id="cloudlora_container")
        image_uri = gr.Textbox(label="Kohya sample container image URI", visible=False,
                               placeholder="123456789012.dkr.ecr.us-east-1.amazonaws.com/kohya-ss:latest",
                               elem_id="cloudlora_image_uri")
        sagemaker_note = gr.Markdown("", visible=False)
        with gr.Accordion("config_params (Kohya TOML)", open=True):
            start = _knob_initial(default_text)
            knob_boxes = []
            for row in (KNOBS[:4], KNOBS[4:]):
                with gr.Row():
                    knob_boxes += [gr.Textbox(value=start[k], label=k, elem_id=f"cloudlora_knob_{k}") for k in row]
            config = gr.Textbox(value=default_text, lines=18, max_lines=60, label="config_params",
                                elem_id="cloudlora_config")
            with gr.Row():
                format_btn = gr.Button("Format config Params", elem_id="cloudlora_format_config")
            config_msg = gr.Markdown(elem_id="cloudlora_config_msg")
        estimate_md = gr.Markdown(elem_id="cloudlora_estimate")
        create_btn = gr.Button("Create Training Job", variant="primary", elem_id="cloudlora_create_job")
        create_msg = gr.Markdown(elem_id="cloudlora_create_msg")

        gr.Markdown("### Trainings List")
        ticker = gr.Textbox(value=lambda: str(time.time()), every=REFRESH_S, visible=False)
        lora_cards.follow_pulls(ticker)  # the WebUI's Lora cards show each pulled LoRA at once
        jobs_table = gr.Dataframe(headers=train_jobs.LIST_HEADERS, value=train_jobs.list_rows, interactive=False,
                                  wrap=True,
                                  elem_id="cloudlora_jobs")
        with gr.Row():
            selected = gr.Textbox(label="Job ID", elem_id="cloudlora_job_id")
            list_refresh = gr.Button("🔄 Refresh list", elem_id="cloudlora_jobs_refresh")
        job_status = gr.Markdown(elem_id="cloudlora_job_status")
        explanation = gr.Markdown(elem_id="cloudlora_job_explanation")
        with gr.Row():
            stop_btn = gr.Button("Stop", visible=False, elem_id="cloudlora_stop")
            resume_btn = gr.Button("Resume", visible=False, size="sm", elem_id="cloudlora_resume")
            delete_btn = gr.Button("Delete record", visible=False, elem_id="cloudlora_delete")
            output_pick = gr.Dropdown(label="LoRA file", choices=[], visible=False, elem_id="cloudlora_output_file")
            pull_btn = gr.Button("Pull LoRA", visible=False, elem_id="cloudlora_pull")
            tb_btn = gr.Button("Open TensorBoard", visible=False, elem_id="cloudlora_tensorboard")
            use_btn = gr.Button("Use in txt2img", visible=in_webui, elem_id="cloudlora_use_txt2img")
        action_msg = gr.Markdown(elem_id="cloudlora_action_msg")
        continue_panel.wire(continue_from, fm_type=fm_type, selected=selected, model=model, dataset=dataset,
                            lora_name=lora_name, message=action_msg)
        with gr.Row():
            loss_plot = gr.LinePlot(x="step", y="loss", color="tag", title="Loss", label="Loss",
                                    elem_id="cloudlora_loss_plot", width=520, height=300)
            samples = gr.Gallery(label="Samples", elem_id="cloudlora_samples")
        log_box = gr.Textbox(label="Log", lines=14, max_lines=14, interactive=False, elem_id="cloudlora_log")
        epochs_panel.render(selected, ticker)
        use_text = gr.Textbox(visible=False)

        for c in [instance, fm_type, model, dataset, lora_name, spot, max_wait, max_runtime, container, image_uri,
                  config, selected, jobs_table, log_box, use_text, ticker, output_pick] + knob_boxes:
            c.do_not_save_to_config = True

        # Form
        instance.change(on_instance, [instance], [sagemaker_row, sagemaker_note])
        container.change(on_container, [container], [image_uri])
        family_outputs = [fm_type, config, config_msg] + knob_boxes + [instance]
        model.change(on_model, [model, fm_type, config, instance], family_outputs)
        fm_type.input(on_family, [fm_type, config, instance], family_outputs) if hasattr(fm_type, "input") else \
            fm_type.change(on_family, [fm_type, config, instance], family_outputs)
        dataset.change(on_dataset, [dataset, lora_name], [trigger_md, lora_name])
        refresh.click(refresh_choices, [model, dataset], [model, dataset])
        tab.load(refresh_choices, [model, dataset], [model, dataset])
        format_btn.click(format_config, [config, fm_type], [config, config_msg])
        for key, box in zip(KNOBS, knob_boxes):
            box.blur(set_knob(key), [box, config], [config, config_msg])
            box.submit(set_knob(key), [box, config], [config, config_msg])
        for trigger in (config, dataset, instance, spot):
            trigger.change(estimate_text, [config, fm_type, dataset, instance, spot], [estimate_md])

        # Create: disabled while submitting; the client token makes a double submit one job.
        create_inputs = [instance, fm_type, model, dataset, lora_name, config, spot, max_wait, max_runtime, container,
                         image_uri, token, continue_from]
        create_btn.click(lambda: (gr.update(interactive=False, value="Submitting…"), "Submitting…"), None,
                         [create_btn, create_msg]) \
            .then(create_job, create_inputs, [create_msg, token, selected]) \
            .then(lambda: gr.update(interactive=True, value="Create Training Job"), None, [create_btn]) \
            .then(train_jobs.list_rows, None, [jobs_table])

        # Trainings list and the selected job, refreshed with every tick.
        detail_outputs = [job_status, log_box, loss_plot, samples, explanation, use_text, stop_btn, delete_btn, pull_btn,
                          tb_btn, output_pick, resume_btn]
        detail_inputs = [selected, output_pick]
        ticker.change(train_jobs.list_rows, None, [jobs_table])
        ticker.change(train_jobs.job_details, detail_inputs, detail_outputs)
        list_refresh.click(train_jobs.list_rows, None, [jobs_table])
        jobs_table.select(train_jobs.on_select, [jobs_table], [selected])
        selected.change(train_jobs.job_details, [selected], detail_outputs)
        stop_btn.click(train_jobs.stop_job, [selected], [action_msg]) \
            .then(train_jobs.job_details, detail_inputs, detail_outputs)
        resume_btn.click(train_jobs.resume_job, [selected], [action_msg]) \
            .then(train_jobs.job_details, detail_inputs, detail_outputs) \
            .then(train_jobs.list_rows, None, [jobs_table])
        delete_btn.click(train_jobs.delete_job, [selected], [action_msg]) \
            .then(train_jobs.list_rows, None, [jobs_table])
        pull_btn.click(train_jobs.pull_job, [selected, output_pick], [action_msg]) \
            .then(train_jobs.job_details, detail_inputs, detail_outputs)
        tb_btn.click(train_jobs.open_tensorboard, [selected], [action_msg])
        if in_webui:
            use_btn.click(None, [use_text], None, _js="cloudloraUseInTxt2img")
    return tab
