"""The WebUI glue and the entry script, run against a small fake A1111 `modules` package (tests/webui/fake_webui).

The real A1111 1.10.1 check is done by hand (see docs/development.md); these keep the glue honest.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).parent / "fake_webui"


@pytest.fixture
def fake_webui(tmp_path, monkeypatch):
    """Imports the fake `modules` with models_path in tmp; undoes everything (host, options provider) afterwards."""
    from cloudlora import host, settings

    monkeypatch.syspath_prepend(str(FAKE))
    for name in [m for m in sys.modules if m == "modules" or m.startswith("modules.")]:
        monkeypatch.delitem(sys.modules, name)
    import modules.paths
    import modules.script_callbacks
    import modules.sd_models
    import modules.shared

    models = tmp_path / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    monkeypatch.setattr(modules.paths, "models_path", str(models))
    yield modules
    for name in [m for m in sys.modules if m == "modules" or m.startswith("modules.")]:
        del sys.modules[name]
    host.install(host.Host())
    settings.set_webui_options_provider(None)


def test_the_settings_section_holds_every_connection_option_and_no_secret(fake_webui):
    from cloudlora import settings, webui

    webui.setup()
    webui.on_ui_settings()
    labels = fake_webui.shared.opts.data_labels
    keys = sorted(labels)
    assert keys == sorted(f"cloudlora_{n}" for n in ["backend", "aws_profile", "region", "bucket", "role_arn",
                                                    "image_uri", "instance_type", "store_dir", "s3_endpoint_url"])
    assert {info.section for info in labels.values()} == {("cloudlora", "Cloud Training")}
    assert not any(word in key for key in keys for word in ("secret", "password", "access_key", "token"))
    assert labels["cloudlora_backend"].component_args == {"choices": ["auto", "local", "sagemaker"]}
    # Every option is a Settings field, so the resolution order can use it.
    assert {k[len("cloudlora_"):] for k in keys} <= set(settings.Settings().public())


def test_webui_options_sit_between_the_environment_and_the_settings_file(fake_webui, monkeypatch):
    from cloudlora import settings, webui

    webui.setup()
    webui.on_ui_settings()
    settings.save({"region": "eu-west-1", "bucket": "from-file"})
    opts = fake_webui.shared.opts
    opts.cloudlora_region = "us-west-2"
    resolved = settings.resolve()
    assert (resolved.region, resolved.sources["region"]) == ("us-west-2", "webui")
    assert (resolved.bucket, resolved.sources["bucket"]) == ("from-file", "file")  # empty option falls through
    assert resolved.effective_backend == "local"  # "auto" is not a value: it falls through too
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    assert settings.resolve().region == "ap-south-1"
    opts.cloudlora_backend = "sagemaker"
    assert settings.resolve().effective_backend == "sagemaker"


def test_the_host_knows_the_lora_folder_checkpoints_lora_refresh_and_interrogator(fake_webui, tmp_path,
                                                                                   monkeypatch):
    from PIL import Image

    from cloudlora import host, webui

    webui.setup()
    h = host.current()
    assert (h.name, h.in_webui) == ("a1111", True)
    assert h.lora_dir() == tmp_path / "models" / "Lora"
    monkeypatch.setattr(fake_webui.shared.cmd_opts, "lora_dir", str(tmp_path / "my-loras"))
    assert h.lora_dir() == tmp_path / "my-loras"

    ckpt = tmp_path / "models" / "Stable-diffusion" / "base.safetensors"
    ckpt.write_bytes(b"x")
    assert h.list_checkpoints(False) == []  # nothing scanned yet: no refresh asked
    assert h.list_checkpoints(True) == [("base.safetensors [0123abcd]", str(ckpt))]
    assert fake_webui.sd_models.list_models_calls == 1

    calls = []
    networks = type(sys)("networks")
    networks.list_available_networks = lambda: calls.append("scan")
    monkeypatch.setitem(sys.modules, "networks", networks)
    h.refresh_loras()
    assert calls == ["scan"]

    assert h.interrogate(Image.new("L", (8, 4))) == "a photo, 8x4 RGB"


def test_forge_is_told_apart_by_its_modules_forge_package(fake_webui, monkeypatch):
    from cloudlora import host, webui

    monkeypatch.setitem(sys.modules, "modules_forge", type(sys)("modules_forge"))
    webui.setup()
    assert host.current().name == "forge"


def test_app_started_mounts_the_api_with_the_webui_api_auth(fake_webui, monkeypatch, api_client):
    from cloudlora import webui

    monkeypatch.setattr(fake_webui.shared.cmd_opts, "api", True)
    monkeypatch.setattr(fake_webui.shared.cmd_opts, "api_auth", "alice:s3cret")
    webui.setup()
    app = FastAPI()
    webui.on_app_started(None, app)
    assert api_client(app).get("/cloudlora/v1/version").status_code == 401
    ok = api_client(app, auth=("alice", "s3cret")).get("/cloudlora/v1/version")
    assert ok.status_code == 200 and ok.json()["host"] == "a1111"


def test_script_unloaded_stops_background_work(fake_webui):
    import threading

    from cloudlora import background, webui

    stop = threading.Event()
    background.register_stopper(stop.set)
    thread = background.start("poller", stop.wait, 30)
    webui.on_script_unloaded()
    thread.join(5)
    assert stop.is_set() and not thread.is_alive()


ENTRY_PROBE = r"""
import json, runpy, sys
sys.path.insert(0, sys.argv[1])  # the fake `modules`
ext = sys.argv[2]
sys.path.insert(0, ext)  # A1111 has the extension folder on sys.path while scripts load
runpy.run_path(ext + "/scripts/cloudlora.py", run_name="cloudlora.py")
sys.path.remove(ext)
import cloudlora, cloudlora_backend, cloudlora.webui
from modules import script_callbacks as cb
tabs = cb.ui_tabs_callback()
cb.ui_settings_callback()
from modules import shared
print(json.dumps({
    "cloudlora": cloudlora.__file__, "backend": cloudlora_backend.__file__,
    "callbacks": {k: len(v) for k, v in cb.callback_map.items()},
    "tabs": [[title, elem_id, type(blocks).__name__] for blocks, title, elem_id in tabs],
    "options": len([k for k in shared.opts.data_labels if k.startswith("cloudlora_")]),
}))
"""


def test_the_entry_script_loads_the_extension_folder_without_pip_and_registers_everything(tmp_path):
    ext = tmp_path / "extensions" / "cloud-lora-trainer"
    for folder in ["scripts", "extension", "cloud_backend"]:
        shutil.copytree(ROOT / folder, ext / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-c", ENTRY_PROBE, str(FAKE), str(ext)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["cloudlora"] == str(ext / "extension" / "__init__.py")  # the copy, not the pip-installed checkout
    assert got["backend"] == str(ext / "cloud_backend" / "__init__.py")
    assert got["callbacks"] == {"ui_tabs": 1, "ui_settings": 1, "app_started": 1, "script_unloaded": 1}
    assert got["tabs"] == [["Cloud Asset Management", "cloudlora_assets", "Blocks"],
                           ["Train Management", "cloudlora_train", "Blocks"]]
    assert got["options"] == 9


def test_app_started_bounds_the_servers_wait_for_open_connections_so_reload_ui_cannot_hang(fake_webui):
    """A page open on the tabs keeps a polling connection; gradio's close() waited for it forever (Reload UI)."""
    import types

    import uvicorn

    from cloudlora import webui

    webui.setup()
    config = uvicorn.Config(app=None)
    assert config.timeout_graceful_shutdown is None  # uvicorn's default: wait for ever
    demo = types.SimpleNamespace(server=types.SimpleNamespace(config=config))
    webui.on_app_started(demo, FastAPI())
    assert config.timeout_graceful_shutdown == 3
    config.timeout_graceful_shutdown = 30  # a host's own choice is kept
    webui.cap_graceful_shutdown(demo)
    assert config.timeout_graceful_shutdown == 30
