"""The AWS panel of Cloud Asset Management: "Set up AWS" (stack + image build, with live progress), "Delete AWS
stack", and "Add access key" (writes a named profile into AWS's credentials file).

The work runs in a background task (cloudlora.aws.tasks, shared with POST /cloudlora/v1/setup); the page polls it.
The secret key passes through one event only: it is written to the credentials file and the fields are cleared;
it is never in settings, options, logs or UI state.
"""
from __future__ import annotations

import time

import gradio as gr

from .. import settings

POLL_S = 2.0
MAX_FOLLOW_S = 3 * 3600
_STATE_ICON = {"running": "… running", "done": "✓ done", "failed": "✗ failed", "declined": "– nothing deleted"}


def _configured_markdown() -> str:
    try:
        s = settings.resolve()
    except Exception as err:  # noqa: BLE001 - a broken settings file must not stop the tab from rendering
        return f"✗ {err}"
    if not (s.bucket or s.role_arn or s.image_uri):
        return "Not set up yet: **Set up AWS** creates the bucket, the role and the trainer image (about 15–25 min)."
    return (f"Region `{s.region or '?'}` · bucket `{s.bucket or '-'}` · role `{s.role_arn or '-'}` · "
            f"image `{s.image_uri or '-'}`")


def task_markdown(task: dict | None) -> str:
    if not task:
        return ""
    lines = [f"**{task['action'].capitalize()}: {_STATE_ICON.get(task['state'], task['state'])}**"]
    messages = task.get("messages", [])
    if messages:
        shown = messages[-30:]
        lines.append("```\n" + "\n".join(shown) + "\n```")
    if task.get("error"):
        lines.append(f"✗ {task['error']}")
        if task.get("fix"):
            lines.append(f"**Fix:** {task['fix']}")
    if task["state"] == "done" and task["action"] == "setup":
        r = task.get("result", {})
        lines.append(f"Image `{r.get('image_uri', '')}` ({'built' if r.get('image_built') else 'up to date'}); "
                     "the settings are saved. The SageMaker backend is ready.")
    return "\n\n".join(lines)


def follow(task_id: str):
    """Yields the task's progress every POLL_S seconds until it finishes (a generator: gradio streams it)."""
    from ..aws import tasks

    deadline = time.monotonic() + MAX_FOLLOW_S
    while True:
        try:
            task = tasks.get(task_id) if task_id else tasks.latest()
        except Exception as err:  # noqa: BLE001
            yield f"✗ {err}", _configured_markdown()
            return
        if task is None:
            yield "No setup has run since the WebUI started.", _configured_markdown()
            return
        yield task_markdown(task), _configured_markdown()
        if task["state"] != "running" or time.monotonic() > deadline:
            return
        time.sleep(POLL_S)


def start(action: str, rebuild: bool = False, empty_bucket: bool = False) -> tuple[str, str]:
    """Starts the task; returns (task id, first status line)."""
    from ..aws import tasks

    try:
        options = {"empty_bucket": bool(empty_bucket)} if action == "delete" else {"rebuild": bool(rebuild)}
        task_id = tasks.start(action, **options)
    except Exception as err:  # noqa: BLE001 - shown, never a stack trace
        return "", f"✗ {err}"
    return task_id, "Starting…"


def add_key(profile: str, key_id: str, secret: str, region: str, use_it: bool):
    """Saves the key as a profile; always clears the key fields. Returns (key id, secret, message)."""
    from ..aws.credentials import add_access_key

    try:
        info = add_access_key(profile, key_id, secret, region)
    except Exception as err:  # noqa: BLE001 - UserError text names the fix
        return gr.update(value=""), gr.update(value=""), f"✗ Not saved: {err}"
    message = f"✓ Saved profile `{info['profile']}` in `{info['credentials_file']}` (mode 0600)"
    if info.get("arn"):
        message += f"; AWS accepted it: `{info['arn']}`"
    if use_it:
        updates = {"aws_profile": info["profile"]}
        if region and region.strip():
            updates["region"] = region.strip()
        settings.save(updates)
        message += ". The extension now uses this profile (reload the page to see it under Connection)"
    return gr.update(value=""), gr.update(value=""), message + "."


def render() -> None:
    with gr.Accordion("AWS setup", open=False, elem_id="cloudlora_aws"):
        gr.Markdown("**Set up AWS** creates (or updates) the CloudFormation stack `cloudlora`: an encrypted private "
                    "S3 bucket, the SageMaker execution role, an ECR repository, and builds the trainer image in "
                    "AWS CodeBuild (no Docker needed here). Your IAM user needs the permissions in "
                    "`cloud_backend/infra/user-policy.json`. Running it again changes only what changed.")
        configured = gr.Markdown(value=_configured_markdown, elem_id="cloudlora_aws_configured")
        with gr.Row():
            rebuild = gr.Checkbox(value=False, label="Rebuild the trainer image even if it is up to date",
                                  elem_id="cloudlora_aws_rebuild")
            setup_button = gr.Button("Set up AWS", variant="primary", elem_id="cloudlora_aws_setup")
            follow_button = gr.Button("Show last setup", elem_id="cloudlora_aws_follow")
        with gr.Accordion("Delete the AWS stack", open=False, elem_id="cloudlora_aws_delete_box"):
            empty = gr.Checkbox(value=False, label="Also delete everything in the bucket (models, datasets, jobs)",
                                elem_id="cloudlora_aws_empty_bucket")
            delete_button = gr.Button("Delete AWS stack", variant="stop", elem_id="cloudlora_aws_delete")
        status = gr.Markdown(elem_id="cloudlora_aws_status")
        task_id = gr.Textbox(visible=False, elem_id="cloudlora_aws_task_id")

        with gr.Accordion("Add access key", open=False, elem_id="cloudlora_aws_key_box"):
            gr.Markdown("Writes a named profile into your AWS credentials file (like `aws configure`), with mode "
                        "0600. The secret is never stored by the extension. Prefer `aws sso login` where you can.")
            with gr.Row():
                profile = gr.Textbox(value="cloudlora", label="Profile name", elem_id="cloudlora_key_profile")
                key_region = gr.Textbox(label="Region (optional)", placeholder="us-east-1",
                                        elem_id="cloudlora_key_region")
            with gr.Row():
                key_id = gr.Textbox(label="Access key ID", placeholder="AKIA…", elem_id="cloudlora_key_id")
                secret = gr.Textbox(label="Secret access key", type="password", elem_id="cloudlora_key_secret")
            use_it = gr.Checkbox(value=True, label="Use this profile for the extension", elem_id="cloudlora_key_use")
            key_button = gr.Button("Save access key", elem_id="cloudlora_key_save")
            key_result = gr.Markdown(elem_id="cloudlora_key_result")

    for component in (configured, rebuild, empty, status, task_id, profile, key_region, key_id, secret, use_it,
                      key_result):
        component.do_not_save_to_config = True

    setup_button.click(lambda r: start("setup", rebuild=r), [rebuild], [task_id, status]) \
        .then(follow, [task_id], [status, configured])
    delete_button.click(lambda e: start("delete", empty_bucket=e), [empty], [task_id, status]) \
        .then(follow, [task_id], [status, configured])
    follow_button.click(lambda: "", None, [task_id]).then(follow, [task_id], [status, configured])
    key_button.click(add_key, [profile, key_id, secret, key_region, use_it], [key_id, secret, key_result])
