"""Cloud LoRA Trainer's entry for A1111 / Forge: makes the package importable from this clone, registers callbacks."""
import importlib.util
import os

# extension/ is the package `cloudlora`, cloud_backend/ is `cloudlora_backend`. A1111 has this folder on sys.path
# only while this file loads, so the names come from extension/bootstrap.py (loaded by path), which the processes
# the extension starts use too. "Reload UI" re-runs this file and keeps the already loaded package.
_spec = importlib.util.spec_from_file_location(
    "cloudlora_entry_bootstrap", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                              "extension", "bootstrap.py"))
_bootstrap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bootstrap)
_bootstrap.install()

from cloudlora import webui  # noqa: E402
from modules import script_callbacks  # noqa: E402

webui.setup()
script_callbacks.on_ui_tabs(webui.on_ui_tabs)
script_callbacks.on_ui_settings(webui.on_ui_settings)
script_callbacks.on_app_started(webui.on_app_started)
script_callbacks.on_script_unloaded(webui.on_script_unloaded)
