"""Train Management's form: what each field does when it changes, and Create Training Job.

Thin handlers over cloudlora.jobs.service and the trainer's config module (the same functions as the CLI and REST);
train_tab.py lays them out. Written for gradio 3.41 and 4.40 (gr.update only).
"""
from __future__ import annotations

import html
import json
import queue
import threading

import gradio as gr

from .. import host, settings as settings_mod
from ..errors import UserError
from ..jobs import flux
from ..jobs.sagemaker_backend import instances
from . import continue_panel, newest
from .families import family_of_label, FM_LABELS, label_of_family

CONTAINER_LABELS = {"Cloud LoRA trainer image": "cloudlora", "Kohya sample container": "kohya-sample"}
KNOBS = ["max_train_steps", "max_train_epochs", "network_dim", "network_alpha", "learning_rate", "resolution",
         "sample_prompts", "caption"]
PLACEHOLDERS = {"caption": "wd14 (tags) or florence2 (sentences): the job captions the photos first"}
CLEARABLE = {"caption"}  # emptied, the key is set to "" (off); the other fields keep the TOML's value when emptied
BOUNDS = ("min_bucket_reso", "max_bucket_reso")


def instance_value(label: str) -> str:
    """'ml.g5.xlarge · NVIDIA A10G 24 GB · ~$1.41/h' -> 'ml.g5.xlarge'; 'Local (this machine)' -> 'local'."""
    if not label or label.startswith("Local"):
        return instances.LOCAL
    return label.split(" · ")[0].strip()


def instance_labels() -> list[str]:
    return [i.describe() for i in instances.CATALOGUE]


def settings():
    try:
        return settings_mod.resolve()
    except Exception:
        return settings_mod.Settings()


def default_instance_label() -> str:
    s = settings()
    if s.effective_backend == "sagemaker":
        inst = instances.get(s.instance_type)
        if inst:
            return inst.describe()
    return instances.CATALOGUE[0].describe()


def manifests(kind: str) -> list[dict]:
    try:
        from ..store import open_store

        store = open_store(settings())
        if kind == "models":
            from ..assets.models import list_models

            return list_models(store)
        from ..assets.datasets import list_datasets

        return list_datasets(store)
    except Exception:  # an unreachable store shows as an empty list; the status line says why on submit
        return []


def names(kind: str) -> list[str]:
    return [m.get("name", "") for m in manifests(kind) if m.get("name")]


def default_config(family: str) -> str:
    from cloudlora_backend.trainer.config.train_config import default_toml

    return default_toml(family)


def _flat(text: str) -> dict:
    from ..jobs.results.config_values import flatten

    return flatten(text)


def _shown(value) -> str:
    if isinstance(value, list):
        return ", ".join(str(x) for x in value)
    return "" if value is None else str(value)


def knob_initial(text: str) -> dict:
    flat = _flat(text)
    return {k: _shown(flat.get(k)) for k in KNOBS}


def knob_values(text: str) -> list:
    """The plain fields as the TOML has them (unchanged when the TOML does not parse: the user is typing)."""
    try:
        flat = _flat(text or "")
    except Exception:
        return [gr.update() for _ in KNOBS]
    return [gr.update(value=_shown(flat.get(k))) for k in KNOBS]


def synced_text(values: dict) -> str:
    """The fields' values as last given, in the page (a hidden field, JSON): what Create compares the fields with,
    to tell a value the user typed from a field the TOML has not reached yet. In the page, not in a gr.State: a
    State changes on the server before the page shows the TOML of the same update, and a click in between would
    read a new State with an old TOML."""
    return json.dumps(values, sort_keys=True)


def _synced_dict(synced) -> dict | None:
    if isinstance(synced, dict):
        return synced
    try:
        value = json.loads(synced) if synced else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def knob_values_synced(text: str) -> list:
    """knob_values, plus the hidden copy of what the fields were given (see synced_text)."""
    try:
        flat = _flat(text or "")
    except Exception:
        return [gr.update() for _ in KNOBS] + [gr.update()]
    shown = {k: _shown(flat.get(k)) for k in KNOBS}
    return [gr.update(value=shown[k]) for k in KNOBS] + [gr.update(value=synced_text(shown))]


# --- the fields -----------------------------------------------------------------------------------------------------

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
    labels = [label for label, _v in flux.instance_choices()] if family == "flux" else instance_labels()
    current = instance_value(instance_label or "")
    value = next((lb for lb in labels if instance_value(lb) == current), labels[0])
    return gr.update(choices=labels, value=value)


def on_model(model, fm_label, config_text, instance_label=None, request: gr.Request = None):
    """FM Type follows the model; the config is re-prefilled only when it is still the other family's defaults.
    Of quick picks (of a model or an FM Type) only the newest answer changes the page (newest.py)."""
    return newest.answer("family", request, lambda: _on_model(model, fm_label, config_text, instance_label))


def _on_model(model, fm_label, config_text, instance_label):
    family = family_of_label(fm_label)
    for m in manifests("models"):
        if m.get("name") == model and m.get("family") in FM_LABELS.values():
            family = m["family"]
    if FM_LABELS.get(fm_label) != family and label_of_family(family) not in fm_labels():
        note = f"'{model}' is a {label_of_family(family)} model, which is not offered here: {flux.A1111_REASON}"
        return [gr.update(), gr.update(), note] + [gr.update() for _ in KNOBS] + [gr.update(), gr.update()]
    return switch_family(family, fm_label, config_text, instance_label)


def on_family(fm_label, config_text, instance_label=None, request: gr.Request = None):
    """FM Type clicked: that family's defaults and instance list (of quick clicks, the newest answer only)."""
    return newest.answer("family", request,
                         lambda: switch_family(family_of_label(fm_label), None, config_text, instance_label))


def switch_family(family, old_label, config_text, instance_label=None):
    """FM Type shows `family`; the config becomes that family's defaults only while it is some family's untouched
    defaults (an edited config is kept, with a note when the family changed). Nothing else is rewritten, so a late
    model-change event cannot undo the user's edits. The instance list follows the family.
    Returns [FM Type, config, note, *fields, synced fields, instance list]."""
    keep = [gr.update() for _ in KNOBS] + [gr.update()]
    label = gr.update(value=label_of_family(family))
    inst = instance_update(family, instance_label)
    current = next((f for f in FM_LABELS.values() if config_text == default_config(f)), None)
    if current == family:
        return [label, gr.update(), gr.update()] + keep + [inst]
    if current is None and (config_text or "").strip():
        changed = old_label is None or FM_LABELS.get(old_label) != family
        note = (f"FM Type is now {label_of_family(family)}; your edited config was kept (check its resolution)."
                if changed else gr.update())
        return [label, gr.update(), note] + keep + [inst]
    text = default_config(family)
    return [label, gr.update(value=text), ""] + knob_values_synced(text) + [inst]


def suggested_name(dataset: str, triggers: list[str]) -> str:
    """The trigger word names what the LoRA teaches; the dataset's name only when no trigger is a file name."""
    from ..jobs.spec import default_lora_name  # one function for the tab and the CLI

    return default_lora_name(dataset, triggers)


def on_dataset(dataset, lora_name, suggested):
    """Shows the trigger words and suggests the LoRA name, unless the user typed one (then it stays theirs)."""
    triggers = []
    for d in manifests("datasets"):
        if d.get("name") == dataset:
            triggers = d.get("triggers") or []
    shown = ", ".join(f"`{t}`" for t in triggers) or "(none)"
    suggestion = suggested_name(dataset or "", triggers)
    name = gr.update(value=suggestion) if not (lora_name or "").strip() or lora_name == suggested else gr.update()
    return gr.update(value=f"Trigger word(s): {shown}" if dataset else ""), name, suggestion


def refresh_choices(model, dataset, fm_label=None):
    """New lists; the user's picks stay while they still exist. With no model picked, the first model of the FM
    Type shown is proposed, never one of another family (that would switch the FM Type without asking)."""
    found = manifests("models")
    models, datasets = [m["name"] for m in found if m.get("name")], names("datasets")
    if model not in models:
        family = family_of_label(fm_label) if fm_label else None
        model = next((m["name"] for m in found if m.get("name") and family in (None, m.get("family"))), None)
    return (gr.update(choices=models, value=model),
            gr.update(choices=datasets, value=dataset if dataset in datasets else (datasets[0] if datasets else None)))


def format_config(config_text, fm_label):
    from cloudlora_backend.trainer.config import train_config as kohya_config

    family = family_of_label(fm_label)
    report = kohya_config.check(config_text or "", family)
    if report.errors:
        lines = ["**The config has problems:**"] + [f"- ✗ {html.escape(e)}" for e in report.errors]
        lines += [f"- ⚠ {html.escape(w)}" for w in report.warnings]
        return gr.update(), "\n".join(lines)
    text = kohya_config.format_toml(config_text, family)
    msg = "✓ Valid and normalised." + "".join(f"\n- ⚠ {html.escape(w)}" for w in report.warnings)
    return gr.update(value=text), msg


def _bounds_note(before: dict, after: dict) -> str:
    moved = [f"{k} {_shown(before.get(k, '(default)'))} → {after[k]}" for k in BOUNDS
             if after.get(k) is not None and after.get(k) != before.get(k)]
    return f"The bucket bounds you never set follow the resolution: {', '.join(moved)}." if moved else ""


def knob_outcome(key: str, value, config_text: str, family: str) -> tuple[str | None, str]:
    """(the TOML with `key` set, what to tell the user). The TOML is None when the value cannot work; the message
    then names the problem and the fix. A note says what else changed (bucket bounds following the resolution)."""
    from cloudlora_backend.trainer.config import train_config as kohya_config

    if (value in (None, "") and key not in CLEARABLE) or not (config_text or "").strip():
        return None, ""
    value = "" if value is None else value
    try:
        text = kohya_config.set_keys(config_text, {key: value}, family)
        before, after = _flat(config_text), _flat(text)
    except kohya_config.ConfigError as err:
        return None, f"✗ {key}: {html.escape('; '.join(err.problems))}"
    except Exception as err:  # the TOML itself does not parse: Format config Params says where
        return None, f"✗ {key} was not written: config_params does not parse ({html.escape(str(err))})."
    problems = [e for e in kohya_config.check(text, family).errors if key in e]
    if problems:
        fix = (" The bucket bounds were set in config_params: change them there, or type a resolution between them."
               if key == "resolution" else "")
        return None, "✗ " + html.escape("; ".join(problems)) + fix
    return text, _bounds_note(before, after) if key == "resolution" else ""


def check_knob(key):
    """As the user types: says at once whether the value can work (nothing is written yet)."""
    def handler(value, config_text, fm_label):
        return knob_outcome(key, value, config_text, family_of_label(fm_label))[1]
    return handler


def set_knob(key):
    """On leaving the field (or Enter): writes the value into the TOML, with what else followed."""
    def handler(value, config_text, fm_label, synced=None):
        text, message = knob_outcome(key, value, config_text, family_of_label(fm_label))
        if text is None or text == config_text:
            return gr.update(), message, gr.update()
        given = {**(_synced_dict(synced) or {}), key: _shown(_flat(text).get(key))}
        return gr.update(value=text), message, gr.update(value=synced_text(given))
    return handler


def estimate_text(config_text, fm_label, dataset, instance_label, spot):
    from ..jobs import service

    backend = "local" if instance_value(instance_label) == instances.LOCAL else "sagemaker"
    try:
        est = service.estimate_job(config=config_text or "", family=family_of_label(fm_label),
                                   dataset=dataset or "", instance_type=instance_value(instance_label),
                                   backend=backend, spot=bool(spot))
    except Exception as err:  # a half-typed config: say so instead of an estimate
        return f"Estimate: unavailable ({html.escape(str(err).splitlines()[0])})"
    return f"**Estimate:** {html.escape(est['summary'])}"


# --- Create Training Job --------------------------------------------------------------------------------------------

def _with_fields(config_text: str, family: str, fields: tuple, synced: dict | None = None) -> str:
    """The TOML with every plain field the user typed into: a click acts on what is on screen, even when a field
    still has focus and its own write has not arrived yet. A field is the user's when it differs from what it was
    last given (`synced`); a field the TOML just changed and that has not caught up yet is left alone."""
    from cloudlora_backend.trainer.config import train_config as kohya_config

    flat = _flat(config_text)
    before = _synced_dict(synced) or {k: _shown(flat.get(k)) for k in KNOBS}
    updates = {k: v for k, v in zip(KNOBS, fields)
               if v not in (None, "") and str(v).strip() != str(before.get(k, "")).strip()
               and str(v).strip() != _shown(flat.get(k)).strip()}
    return kohya_config.set_keys(config_text, updates, family) if updates else config_text


def create_job_live(*args):
    """Create Training Job for the tab: yields what it is doing while the job is being created (a SageMaker job that
    captions downloads the captioner and sends it to the store first: minutes, once), then create_job's answer. The
    work runs in a thread of its own; only the newest of what it said meanwhile is shown."""
    said: queue.Queue = queue.Queue()
    answer: list = []

    def work() -> None:
        try:
            answer.append(create_job(*args, progress=said.put))
        finally:
            said.put(None)

    threading.Thread(target=work, name="cloudlora-create-job", daemon=True).start()
    while True:
        latest = said.get()
        while latest is not None and not said.empty():
            latest = said.get_nowait()
        if latest is None:
            break
        yield f"⏳ {html.escape(latest)}…", gr.update(), gr.update(), gr.update()
    yield answer[0] if answer else ("✗ The job could not be created (see the WebUI's console).", gr.update(),
                                    gr.update(), gr.update())


def create_job(instance_label, fm_label, model, dataset, lora_name, config_text, spot, max_wait_h, max_runtime_h,
               container_label, image_uri, token, continue_choice=None, synced=None, *fields, progress=None):
    """(message, token, selected job, config). The message is empty on success: the job panel shows the job.
    `progress(text)` is told each step while the job is being created."""
    from ..jobs import service
    from ..jobs.records import TokenReused
    from ..jobs.spec import JobSpec, new_client_token

    instance = instance_value(instance_label)
    backend = "local" if instance == instances.LOCAL else "sagemaker"
    family = family_of_label(fm_label)
    config_update = gr.update()
    try:
        text = _with_fields(config_text or "", family, fields, synced) if fields else (config_text or "")
        if text != config_text:
            config_update = gr.update(value=text)
        spec = JobSpec(model=model or "", dataset=dataset or "", family=family, config=text,
                       lora_name=(lora_name or "").strip(), backend=backend, instance_type=instance,
                       spot=bool(spot) and backend == "sagemaker",
                       max_wait_s=int(float(max_wait_h or 48) * 3600),
                       max_runtime_s=int(float(max_runtime_h or 24) * 3600),
                       container=CONTAINER_LABELS.get(container_label, "cloudlora"),
                       image_uri=(image_uri or "").strip(), client_token=token,
                       continue_from=continue_panel.value_of(continue_choice))
        job = service.create_job(spec, settings(), progress=progress)
    except TokenReused as err:  # this form already made a job (its answer was lost): the next click makes a new one
        return (f"✗ This form already created job `{html.escape(err.job_id)}` with other settings. Press Create "
                "again to create another job."), new_client_token(), gr.update(value=err.job_id), config_update
    except UserError as err:
        msg = f"✗ {html.escape(err.message)}".replace("\n", "<br>")
        if err.fix:
            msg += f"<br>**Fix:** {html.escape(err.fix)}"
        return msg, token, gr.update(), config_update
    except Exception as err:  # never a stack trace in the tab, never a bare "Error"
        return f"✗ The job could not be created: {html.escape(str(err))}", token, gr.update(), config_update
    lines = [] if job.get("created", True) else [f"This form already created job `{job['id']}`: it is shown below."]
    lines += [f"⚠ {html.escape(w)}" for w in job.get("warnings") or []]
    # A new token only after success: a second click of the same form finds the same job.
    return "<br>".join(lines), new_client_token(), gr.update(value=job["id"]), config_update
