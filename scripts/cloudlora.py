"""Cloud LoRA Trainer's entry for A1111 / Forge: loads the package under its unique name and registers the callbacks."""
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# extension/ is the package `cloudlora`, cloud_backend/ is `cloudlora_backend` (as setup.py maps them). Loaded from
# this folder, so the extension works without being pip-installed; "Reload UI" keeps the already loaded package.
for _name, _folder in (("cloudlora", "extension"), ("cloudlora_backend", "cloud_backend")):
    if _name not in sys.modules:
        _path = os.path.join(ROOT, _folder)
        _spec = importlib.util.spec_from_file_location(
            _name, os.path.join(_path, "__init__.py"), submodule_search_locations=[_path])
        _module = importlib.util.module_from_spec(_spec)
        sys.modules[_name] = _module
        _spec.loader.exec_module(_module)

from cloudlora import webui  # noqa: E402
from modules import script_callbacks  # noqa: E402

webui.setup()
script_callbacks.on_ui_tabs(webui.on_ui_tabs)
script_callbacks.on_ui_settings(webui.on_ui_settings)
script_callbacks.on_app_started(webui.on_app_started)
script_callbacks.on_script_unloaded(webui.on_script_unloaded)
