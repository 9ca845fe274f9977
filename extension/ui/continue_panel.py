"""Train Management's "continue from a LoRA": pick a Kohya LoRA of the job's family from the Lora folder, or press
"Continue training" on a finished job. The new job starts from that LoRA's weights (cloudlora.jobs.continue_from;
the CLI's `--continue-from`, REST's `continue_from`). Thin handlers; train_tab.py wires them in.
"""
from __future__ import annotations

import gradio as gr

NEW = "(a new LoRA)"


def _settings():
    from .. import settings as settings_mod

    try:
        return settings_mod.resolve()
    except Exception:
        return settings_mod.Settings()


def _choices(family: str | None, extra: str | None = None) -> list[str]:
    from ..jobs import continue_from

    try:
        found = continue_from.lora_choices(_settings(), family)
    except Exception:  # an unreadable Lora folder lists nothing; the form still works
        found = []
    return [NEW] + ([extra] if extra and extra not in found else []) + found


def value_of(choice) -> str:
    """The JobSpec.continue_from value of the dropdown's choice ("" for a new LoRA)."""
    return "" if not choice or choice == NEW else str(choice)


def on_family(fm_label, current):
    """The list follows FM Type (only LoRAs of that family can be continued); a job's own LoRA stays."""
    from .families import FM_LABELS

    keep = current if current and str(current).startswith("job:") else None
    choices = _choices(FM_LABELS.get(fm_label, "sd15"), keep)
    return gr.update(choices=choices, value=current if current in choices else NEW)


def continue_job(job_id):
    """Fills the form from a completed job: its model, dataset, family, and its LoRA to start from."""
    from ..jobs import service
    from .families import label_of_family

    keep = [gr.update()] * 5
    if not job_id:
        return keep + ["Select a completed job first."]
    try:
        job = service.get_job(job_id, _settings(), log_lines=0, auto_pull=False)
    except Exception as err:
        return keep + [f"❌ {err}"]
    if job["status"] != "Completed":
        return keep + [f"The job is {job['status']}: only a completed job's LoRA can be continued."]
    value = f"job:{job_id}"
    return [gr.update(choices=_choices(job["family"], value), value=value), gr.update(value=job["model"]),
            gr.update(value=job["dataset"]), gr.update(value=label_of_family(job["family"])),
            gr.update(value=f"{job['lora_name']}-continued"),
            f"The form continues `{job['lora_name']}`: set max_train_steps, then Create Training Job."]


def describe(choice) -> str:
    """One line on the picked LoRA (`cloudlora lora inspect`'s function): family, network, rank/alpha, triggers,
    steps, and the hosts that will not load it."""
    from ..library.lora_info import FAMILY_NAMES, inspect
    from ..library.pull import lora_dir

    if not choice or choice == NEW or str(choice).startswith("job:"):
        return ""
    try:
        info = inspect(lora_dir(_settings()) / str(choice))
    except Exception as err:  # noqa: BLE001 - a file that cannot be read says so, the form still works
        return f"Cannot read {choice}: {err}"
    alpha = f", alpha {info.alpha:g}" if info.alpha is not None else ""
    parts = [f"{FAMILY_NAMES.get(info.family, info.family)} {info.network}", f"rank {info.rank}{alpha}",
             f"{info.steps} steps" if info.steps is not None else "",
             f"triggers: {', '.join(info.trigger_words)}" if info.trigger_words else ""]
    not_loading = [host for host, verdict in info.hosts.items() if verdict.startswith("no")]
    if not_loading:
        parts.append(f"not loaded by {', '.join(not_loading)}")
    return " · ".join(p for p in parts if p)


def render():
    """The dropdown, for the form, with a line describing the picked LoRA; returns the dropdown (create_job
    reads it)."""
    dropdown = gr.Dropdown(choices=_choices("sd15"), value=NEW, label="Continue from a LoRA (its weights are the "
                           "start; network_dim must match, or set dim_from_weights = true)",
                           elem_id="cloudlora_continue_from")
    dropdown.do_not_save_to_config = True
    info = gr.Markdown("", elem_id="cloudlora_continue_info")
    dropdown.change(describe, inputs=[dropdown], outputs=[info], show_progress=False)
    return dropdown


def wire(dropdown, *, fm_type, selected, model, dataset, lora_name, message) -> None:
    """A "Continue training" button for the selected job, and the list following FM Type."""
    button = gr.Button("Continue training", elem_id="cloudlora_continue_job")
    button.click(continue_job, [selected], [dropdown, model, dataset, fm_type, lora_name, message])
    fm_type.change(on_family, [fm_type, dropdown], [dropdown])
