"""The connection panel: where training runs (Local / SageMaker), the AWS profile and region, the Lora folder
(standalone; inside a WebUI it is the WebUI's own), Save, and "Check connection" (the doctor, one line per check with
the fix).

Save writes the user's settings file (never a secret: credentials stay in AWS's own files and chain).
"""
from __future__ import annotations

import gradio as gr

from pathlib import Path

from .. import host, settings

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


def _flags(backend_label, profile, region, lora_dir=None) -> dict:
    flags = {"backend": BACKENDS.get(backend_label, ""), "aws_profile": (profile or "").strip(),
             "region": (region or "").strip()}
    if lora_dir is not None and not host.current().in_webui:  # inside a WebUI the Lora folder is the WebUI's
        flags["lora_dir"] = (lora_dir or "").strip()
    return flags


def lora_choices() -> list[str]:
    """The current Lora folder first, then those of the A1111/Forge/ComfyUI installs found on this machine."""
    from ..library import lora_folders

    current = str(_current().effective_lora_dir)
    found = [str(f.path) for f in lora_folders.detect()]
    return [current] + [p for p in found if p != current]


def lora_help() -> str:
    from ..library import lora_folders

    found = lora_folders.detect()
    if not found:
        return ("No A1111, Forge or ComfyUI install was found in the usual places; type the path of its "
                "`models/Lora` (ComfyUI: `models/loras`) folder.")
    return "Found on this machine: " + "; ".join(f"**{f.kind}** `{f.path}`" for f in found) + "."


def check_lora_dir(value: str) -> str:
    """'' or the reason the folder cannot take LoRAs; a missing folder whose parent exists is created."""
    if not value:
        return ""
    path = Path(value).expanduser()
    if not path.is_absolute():
        return (f"the Lora folder `{value}` is not a full path (e.g. C:\\ComfyUI\\models\\loras or "
                "~/ComfyUI/models/loras)")
    if path.is_dir():
        return ""
    if path.exists():
        return f"`{path}` is a file, not a folder"
    if not path.parent.is_dir():
        return f"`{path.parent}` does not exist (check the path)"
    try:
        path.mkdir()
    except OSError as err:
        return f"`{path}` could not be created ({err.strerror or err})"
    return ""


def save(backend_label, profile, region, lora_dir=None) -> str:
    """Writes the fields to the settings file; says where, and which ones something else overrides."""
    try:
        wanted = _flags(backend_label, profile, region, lora_dir)
        shown_lora = "lora_dir" in wanted
        before = settings.resolve()
        if shown_lora and before.sources.get("lora_dir") != "file" and \
                wanted["lora_dir"] in ("", str(before.effective_lora_dir)):
            del wanted["lora_dir"]  # the default (or the environment's) left as it was: not frozen into the file
        problem = check_lora_dir(wanted.get("lora_dir", ""))
        if problem:
            return f"✗ Not saved: {problem}."
        path = settings.save(wanted)
        now = settings.resolve()
    except Exception as err:
        return f"✗ Not saved: {err}"
    lines = [f"✓ Saved to `{path}`."]
    if shown_lora:
        lines.append(f"Finished LoRAs go to `{now.effective_lora_dir}`.")
    names = {"backend": "Backend", "aws_profile": "AWS profile", "region": "Region", "lora_dir": "Lora folder"}
    for name, value in wanted.items():
        got = getattr(now, name)
        source = now.sources.get(name)
        if value and got != value and source in ("env", "webui"):
            where = "the environment" if source == "env" else "Settings → Cloud Training"
            lines.append(f"⚠ {names[name]} is `{got}` from {where}, which takes precedence over this file.")
    return "\n\n".join(lines)


def check_connection(backend_label, profile, region, lora_dir=None) -> str:
    """Runs the doctor with the values in the form (not yet saved ones too)."""
    from ..doctor import run_checks

    try:
        s = settings.resolve(_flags(backend_label, profile, region, lora_dir))
        return checks_markdown(run_checks(s))
    except Exception as err:  # the doctor reports problems as lines; anything else still shows, never a stack
        return f"✗ The check could not run: {err}"


def current_values() -> tuple[str, str, str, str]:
    """Backend, AWS profile, region and Lora folder as the settings say now (each page load asks again)."""
    now = _current()
    return _backend_label(now.effective_backend), now.aws_profile, now.region, str(now.effective_lora_dir)


def values_saved_since(built, shown) -> list:
    """The page load's answer: each value saved since the page was built (by the CLI, another page), except where
    the user has already changed the field. Under load that answer can come after the user's clicks; it once put
    the old values back and Save wrote them."""
    now = current_values()
    return [gr.update(value=n) if n != b and s == b else gr.update() for b, s, n in zip(built, shown, now)]


def render(tab: gr.Blocks) -> None:
    """The panel, inside `tab`; one load event of `tab` brings its four values up to date (values_saved_since)."""
    backend_now, profile_now, region_now, lora_now = current_values()
    with gr.Accordion("Connection", open=True, elem_id="cloudlora_connection"):
        gr.Markdown("Train on this machine (**Local**, no AWS needed) or on **SageMaker**. AWS credentials come "
                    "from your AWS profile or environment, never from this page.")
        with gr.Row():
            backend = gr.Radio(list(BACKENDS), value=backend_now,
                               label="Backend", elem_id="cloudlora_backend")
            profile = gr.Textbox(value=profile_now, label="AWS profile",
                                 placeholder="default", elem_id="cloudlora_aws_profile")
            region = gr.Textbox(value=region_now, label="Region", placeholder="us-east-1",
                                elem_id="cloudlora_region")
        in_webui = host.current().in_webui
        with gr.Row(visible=not in_webui):
            lora_dir = gr.Dropdown(choices=lora_choices() if not in_webui else [],
                                   value=lora_now, allow_custom_value=True,
                                   label="Lora folder (finished LoRAs are pulled here; pick an install's or type a "
                                         "path)", elem_id="cloudlora_lora_dir", scale=3)
            rescan = gr.Button("Find Lora folders", elem_id="cloudlora_lora_dir_rescan", scale=1)
        lora_note = gr.Markdown(lora_help() if not in_webui else
                                "Finished LoRAs go to this WebUI's own Lora folder.", elem_id="cloudlora_lora_dir_note")
        with gr.Row():
            save_button = gr.Button("Save", elem_id="cloudlora_save_connection")
            check_button = gr.Button("Check connection", variant="primary", elem_id="cloudlora_check_connection")
        result = gr.Markdown(elem_id="cloudlora_connection_result")
    for component in (backend, profile, region, result, lora_dir, lora_note):
        component.do_not_save_to_config = True  # the values come from the settings each time the page loads
    inputs = [backend, profile, region, lora_dir]
    built = (backend_now, profile_now, region_now, lora_now)
    tab.load(lambda *shown: values_saved_since(built, shown), inputs, inputs, show_progress="hidden")
    rescan.click(lambda: (gr.update(choices=lora_choices()), lora_help()), None, [lora_dir, lora_note])
    save_button.click(save, inputs, result)
    check_button.click(lambda *_: "Checking…", inputs, result).then(check_connection, inputs, result)
