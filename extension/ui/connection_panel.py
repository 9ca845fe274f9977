"""The connection panel: where training runs (Local / SageMaker), the AWS profile and region, Save, and
"Check connection" (the doctor, one line per check with the fix).

Save writes the user's settings file (never a secret: credentials stay in AWS's own files and chain).
"""
from __future__ import annotations

import gradio as gr

from .. import settings

BACKENDS = {"Local": "local", "SageMaker": "sagemaker"}
# Symbols that common fonts have (emoji are missing on many Linux desktops).
ICONS = {"ok": "✓ ok", "problem": "✗ **problem**", "warn": "⚠ warn", "skip": "– skip"}
FIELDS = ["backend", "aws_profile", "region"]


def _current() -> settings.Settings:
    try:
        return settings.resolve()
    except Exception:  # a broken settings file must not stop the tab from rendering; Save/Check report it
        return settings.Settings()


def _backend_label(value: str) -> str:
    return next((label for label, v in BACKENDS.items() if v == value), "Local")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def checks_markdown(checks) -> str:
    """The doctor's checks as a markdown table: check, result, detail, fix."""
    rows = ["| Check | Result | Detail | Fix |", "|---|---|---|---|"]
    for c in checks:
        fix = c.fix if c.status in ("problem", "warn") else ""
        rows.append(f"| {_cell(c.name)} | {ICONS.get(c.status, c.status)} | {_cell(c.detail)} | {_cell(fix)} |")
    problems = sum(c.status == "problem" for c in checks)
    summary = f"**{problems} problem(s)** — each has its fix." if problems else "**No problems found.**"
    return summary + "\n\n" + "\n".join(rows)


def _flags(backend_label, profile, region) -> dict:
    return {"backend": BACKENDS.get(backend_label, ""), "aws_profile": (profile or "").strip(),
            "region": (region or "").strip()}


def save(backend_label, profile, region) -> str:
    """Writes the three fields to the settings file; says where, and which ones something else overrides."""
    try:
        wanted = _flags(backend_label, profile, region)
        path = settings.save(wanted)
        now = settings.resolve()
    except Exception as err:
        return f"✗ Not saved: {err}"
    lines = [f"✓ Saved to `{path}`."]
    names = {"backend": "Backend", "aws_profile": "AWS profile", "region": "Region"}
    for name, value in wanted.items():
        got = getattr(now, name)
        source = now.sources.get(name)
        if value and got != value and source in ("env", "webui"):
            where = "the environment" if source == "env" else "Settings → Cloud Training"
            lines.append(f"⚠ {names[name]} is `{got}` from {where}, which takes precedence over this file.")
    return "\n\n".join(lines)


def check_connection(backend_label, profile, region) -> str:
    """Runs the doctor with the values in the form (not yet saved ones too)."""
    from ..doctor import run_checks

    try:
        s = settings.resolve(_flags(backend_label, profile, region))
        return checks_markdown(run_checks(s))
    except Exception as err:  # the doctor reports problems as lines; anything else still shows, never a stack
        return f"✗ The check could not run: {err}"


def render() -> None:
    with gr.Accordion("Connection", open=True, elem_id="cloudlora_connection"):
        gr.Markdown("Train on this machine (**Local**, no AWS needed) or on **SageMaker**. AWS credentials come "
                    "from your AWS profile or environment, never from this page.")
        with gr.Row():
            backend = gr.Radio(list(BACKENDS), value=lambda: _backend_label(_current().effective_backend),
                               label="Backend", elem_id="cloudlora_backend")
            profile = gr.Textbox(value=lambda: _current().aws_profile, label="AWS profile",
                                 placeholder="default", elem_id="cloudlora_aws_profile")
            region = gr.Textbox(value=lambda: _current().region, label="Region", placeholder="us-east-1",
                                elem_id="cloudlora_region")
        with gr.Row():
            save_button = gr.Button("Save", elem_id="cloudlora_save_connection")
            check_button = gr.Button("Check connection", variant="primary", elem_id="cloudlora_check_connection")
        result = gr.Markdown(elem_id="cloudlora_connection_result")
    for component in (backend, profile, region, result):
        component.do_not_save_to_config = True  # the values come from the settings each time the page loads
    inputs = [backend, profile, region]
    save_button.click(save, inputs, result)
    check_button.click(lambda *_: "Checking…", inputs, result).then(check_connection, inputs, result)
