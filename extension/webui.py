"""The WebUI glue: the only module of the package that imports A1111's / Forge's `modules.*`.

scripts/cloudlora.py registers the callbacks below at module level. This module installs the host (paths, the
checkpoint list, Lora refresh, the interrogator), the settings section "Cloud Training" and the REST routes.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path

from . import background, host, settings

log = logging.getLogger(__name__)

SECTION = ("cloudlora", "Cloud Training")
OPTION_PREFIX = "cloudlora_"
AUTO = "auto"

# Settings field -> (label, choices or None). Never a secret: every option is served by GET /sdapi/v1/options.
OPTIONS = {
    "backend": ("Where training runs (auto: SageMaker once a bucket and role are set, else this machine)",
                [AUTO, "local", "sagemaker"]),
    "aws_profile": ("AWS profile (from ~/.aws/config; credentials stay in AWS's own files)", None),
    "region": ("AWS region, e.g. us-east-1", None),
    "bucket": ("S3 bucket for models, datasets and jobs (empty: the local store folder)", None),
    "role_arn": ("SageMaker execution role ARN (from `cloudlora setup`)", None),
    "image_uri": ("Trainer image URI in ECR (from `cloudlora setup`)", None),
    "instance_type": ("Default training instance type, e.g. ml.g5.2xlarge", None),
    "store_dir": ("Local store folder (empty: the user's data folder)", None),
    "s3_endpoint_url": ("S3 endpoint URL, for S3-compatible stores (MinIO, SeaweedFS, R2); empty for AWS", None),
}


def option_key(name: str) -> str:
    return OPTION_PREFIX + name


def webui_options() -> dict[str, str]:
    """The extension's WebUI options as Settings fields; unset ones are "" so the next layer (the file) applies."""
    from modules import shared

    values = {}
    for name in OPTIONS:
        value = getattr(shared.opts, option_key(name), "") or ""
        values[name] = "" if value == AUTO else str(value).strip()
    return values


def detect_host_name() -> str:
    """'forge' when Forge's own package is importable (it ships modules_forge/), else 'a1111'."""
    if "modules_forge" in sys.modules:
        return "forge"
    try:
        return "forge" if importlib.util.find_spec("modules_forge") is not None else "a1111"
    except (ImportError, ValueError):
        return "a1111"


def lora_dir() -> Path:
    from modules import paths, shared

    return Path(getattr(shared.cmd_opts, "lora_dir", None) or os.path.join(paths.models_path, "Lora"))


def checkpoint_dir() -> Path:
    from modules import paths, shared

    return Path(getattr(shared.cmd_opts, "ckpt_dir", None) or os.path.join(paths.models_path, "Stable-diffusion"))


def list_checkpoints(refresh: bool = False) -> list[tuple[str, str]]:
    from modules import sd_models

    if refresh:
        sd_models.list_models()
    return [(info.title, info.filename) for info in sd_models.checkpoints_list.values()]


def refresh_loras() -> None:
    """Rescans the Lora folder so a new file shows without a restart (the built-in Lora extension's `networks`)."""
    networks = sys.modules.get("networks")
    if networks is not None and hasattr(networks, "list_available_networks"):
        networks.list_available_networks()
    else:
        log.info("cloudlora: the built-in Lora extension is not loaded; refresh the Lora tab by hand")


def interrogate(image) -> str:
    from modules import shared

    interrogator = getattr(shared, "interrogator", None)
    if interrogator is None:
        raise RuntimeError("this WebUI has no interrogator")
    return interrogator.interrogate(image.convert("RGB"))


def loaded_model() -> dict:
    """The checkpoint the WebUI has loaded: its title and family (A1111/Forge set is_sdxl / is_sd2 / is_sd1)."""
    from modules import shared

    model = getattr(shared, "sd_model", None)
    if model is None:
        return {"title": "", "family": ""}
    info = getattr(model, "sd_checkpoint_info", None)
    family = ("sdxl" if getattr(model, "is_sdxl", False) else "sd2" if getattr(model, "is_sd2", False)
              else "flux" if getattr(model, "is_flux", False) or "flux" in type(model).__name__.lower()
              else "sd15" if getattr(model, "is_sd1", False) else "")  # "": unknown, so nothing is refused
    return {"title": getattr(info, "title", "") or "", "family": family}


def txt2img(job):
    """One image from the WebUI's own txt2img (`modules.processing`, as A1111's /sdapi/v1/txt2img runs it): the
    loaded checkpoint, the prompt's <lora:...> tags applied by the built-in Lora extension, nothing saved to the
    outputs folder. Holds the WebUI's queue lock, so it waits for (and never overlaps) the user's generations.

    job: a jobs.epoch_grid.Txt2Img (prompt, negative, width, height, steps, cfg_scale, seed, sampler)."""
    from modules import processing, shared
    from modules.call_queue import queue_lock

    with queue_lock:
        p = processing.StableDiffusionProcessingTxt2Img(
            sd_model=shared.sd_model, prompt=job.prompt, negative_prompt=job.negative, width=job.width,
            height=job.height, steps=job.steps, cfg_scale=job.cfg_scale, seed=job.seed, sampler_name=job.sampler,
            batch_size=1, n_iter=1, do_not_save_samples=True, do_not_save_grid=True)
        try:
            shared.state.begin(job="cloudlora_epoch_grid")
            processed = processing.process_images(p)
        finally:
            shared.state.end()
            close = getattr(p, "close", None)
            if close:
                close()
    if not processed.images:
        raise RuntimeError("the WebUI's txt2img returned no image")
    return processed.images[0]


def setup() -> None:
    """Installs the host and the options provider; called by the entry script on every (re)load."""
    host.install(host.Host(
        name=detect_host_name(),
        lora_dir=lora_dir,
        list_checkpoints=list_checkpoints,
        checkpoint_dir=checkpoint_dir,
        refresh_loras=refresh_loras,
        interrogate=interrogate,
        txt2img=txt2img,
        loaded_model=loaded_model,
    ))
    settings.set_webui_options_provider(webui_options)


# --- callbacks (registered by scripts/cloudlora.py) ---

def on_ui_tabs():
    from . import ui

    return ui.build_tabs()


def on_ui_settings() -> None:
    import gradio as gr
    from modules import shared

    for name, (label, choices) in OPTIONS.items():
        if choices:
            info = shared.OptionInfo(choices[0], label, gr.Radio, {"choices": choices}, section=SECTION,
                                     category_id="training")
        else:
            info = shared.OptionInfo("", label, gr.Textbox, section=SECTION, category_id="training")
        shared.opts.add_option(option_key(name), info)


def on_app_started(demo, app) -> None:
    """Mounts the REST routes the way A1111 mounts its own API: only with --api (or --nowebui), with --api-auth.

    The tabs never need them: they call the same functions directly."""
    from modules import shared

    from . import api, server_logs

    server_logs.ignore_closed_pages()  # a closed browser page is not an error (WebSocketDisconnect 1001)
    cap_graceful_shutdown(demo)
    opts = shared.cmd_opts
    if not (getattr(opts, "api", False) or getattr(opts, "nowebui", False)):
        log.info("cloudlora: REST API not mounted: the WebUI runs without --api (the tabs do not need it)")
        return
    mounted = api.mount(app, getattr(opts, "api_auth", None), api_policy(opts))
    log.info("cloudlora: REST API at %s (areas: %s)", api.PREFIX, ", ".join(mounted) or "version only")


def api_policy(cmd_opts):
    """Who the REST routes answer besides this machine's addresses: the names the user gave the WebUI
    (--server-name, the allowed_hosts setting), *.gradio.live under --share, and the explicit origins of
    --cors-allow-origins (never "*")."""
    from .api import guard

    names = [getattr(cmd_opts, "server_name", None) or ""]
    try:
        names += settings.resolve().allowed_hosts.split(",")
    except Exception:  # noqa: BLE001 - a broken settings file must not stop the WebUI; the doctor names it
        log.warning("cloudlora: could not read the allowed_hosts setting", exc_info=True)
    origins = {o.strip().lower().rstrip("/") for o in (getattr(cmd_opts, "cors_allow_origins", None) or "").split(",")}
    return guard.Policy(
        host_suffixes=(".gradio.live",) if getattr(cmd_opts, "share", False) else (),
        origins=frozenset(o for o in origins if o and o not in ("*", "null")),
    ).with_hosts(names)


def cap_graceful_shutdown(demo, seconds: int = 3) -> None:
    """Bounds how long the server waits for open connections when it closes ("Reload UI", Ctrl+C).

    A page open on the tabs keeps a polling connection (gradio `every=`), and gradio's close() waits for every
    connection: without a bound, Reload UI in A1111 1.10.1 waited forever. uvicorn >= 0.22 has the setting.
    """
    config = getattr(getattr(demo, "server", None), "config", None)
    if config is not None and hasattr(config, "timeout_graceful_shutdown") and not config.timeout_graceful_shutdown:
        config.timeout_graceful_shutdown = seconds


def on_script_unloaded() -> None:
    background.stop_all()
