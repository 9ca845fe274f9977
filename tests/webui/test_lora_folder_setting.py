"""The Lora folder in the standalone Connection panel: A1111/Forge/ComfyUI installs found on the machine are offered,
Save keeps the choice (and pulls go there); inside a WebUI it stays the WebUI's own."""
from __future__ import annotations

from pathlib import Path

from cloudlora import host, settings
from cloudlora.library import lora_folders, pull
from cloudlora.ui import connection_panel


def fake_installs(home: Path) -> dict[str, Path]:
    a1111 = home / "stable-diffusion-webui"
    (a1111 / "modules").mkdir(parents=True)
    (a1111 / "webui.py").write_text("")
    forge = home / "Desktop" / "webui_forge_cu121_torch231" / "webui"  # the one-click package's layout
    (forge / "modules_forge").mkdir(parents=True)
    (forge / "webui.py").write_text("")
    comfy = home / "ComfyUI_windows_portable" / "ComfyUI"
    (comfy / "comfy").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    (home / "Documents" / "photos").mkdir(parents=True)  # not an install
    for install in (a1111, forge, comfy):
        (install / "models").mkdir()
    return {"A1111": a1111 / "models" / "Lora", "Forge": forge / "models" / "Lora",
            "ComfyUI": comfy / "models" / "loras"}


def test_installs_in_the_usual_places_are_found_with_their_lora_folders(tmp_path, monkeypatch):
    home = tmp_path / "home"
    wanted = fake_installs(home)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    found = {f.kind: f.path for f in lora_folders.detect()}
    assert found == wanted
    choices = connection_panel.lora_choices()
    assert choices[0] == str(settings.resolve().effective_lora_dir)  # the current one first
    assert set(choices[1:]) == {str(p) for p in wanted.values()}
    assert "**ComfyUI**" in connection_panel.lora_help() and str(wanted["ComfyUI"]) in connection_panel.lora_help()


def test_save_keeps_the_lora_folder_and_pulls_go_there(tmp_path):
    untouched = connection_panel.save("Local", "", "", str(settings.resolve().effective_lora_dir))
    assert "Finished LoRAs go to" in untouched
    assert "lora_dir" not in settings.read_file()  # the default is not frozen into the file
    comfy = tmp_path / "ComfyUI" / "models"
    comfy.mkdir(parents=True)
    out = connection_panel.save("Local", "", "", str(comfy / "loras"))
    assert out.startswith("✓ Saved") and f"Finished LoRAs go to `{comfy / 'loras'}`" in out
    assert (comfy / "loras").is_dir()  # created: its parent exists
    s = settings.resolve()
    assert s.lora_dir == str(comfy / "loras") and pull.lora_dir(s) == comfy / "loras"

    assert "not a full path" in connection_panel.save("Local", "", "", "relative/loras")
    assert "does not exist" in connection_panel.save("Local", "", "", str(tmp_path / "no" / "such" / "loras"))
    assert settings.resolve().lora_dir == str(comfy / "loras")  # unchanged by the refused ones


def test_an_environment_override_is_said(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDLORA_LORA_DIR", str(tmp_path / "from-env"))
    out = connection_panel.save("Local", "", "", str(tmp_path))
    assert "Lora folder is" in out and "from the environment" in out


def test_inside_a_webui_the_lora_folder_stays_the_webuis(tmp_path, monkeypatch):
    webui_lora = tmp_path / "webui" / "models" / "Lora"
    monkeypatch.setattr(host, "_current", host.Host(name="a1111", lora_dir=lambda: webui_lora))
    connection_panel.save("Local", "", "", str(tmp_path))  # a hidden field's value is not written
    s = settings.resolve()
    assert s.lora_dir == "" and pull.lora_dir(s) == webui_lora
