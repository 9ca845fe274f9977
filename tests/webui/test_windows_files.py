"""Windows file and shell behaviour shown on Linux (WINDOWS.md rows 15, 16, 19, 20, 26, 28, 30-33).

Windows' C runtime opens an fd in text mode unless `O_BINARY` is passed; Linux has no such flag. `windows_crt`
stands in for it: `os.O_BINARY` exists (an otherwise unused bit) and every `os.open` for writing without it is
recorded, as a text-mode fd would be on Windows. The other tests flip `system.WINDOWS` (or `install.WINDOWS`) and
feed what Windows would: a PermissionError from os.replace over an open file, a held-open file, backslash paths.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloudlora import atomic, private_files, system
from cloudlora.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
FAKE_O_BINARY = 0x40000000  # no Linux open flag uses this bit; stripped before the real os.open


@pytest.fixture
def windows_crt(monkeypatch):
    """Paths opened for writing in text mode (no O_BINARY), as Windows' CRT would: each LF written becomes CRLF."""
    text_mode: list[str] = []
    real_open = os.open

    def open_(path, flags, mode=0o777, *, dir_fd=None):
        if flags & (os.O_WRONLY | os.O_RDWR) and not flags & FAKE_O_BINARY:
            text_mode.append(os.fspath(path))
        return real_open(path, flags & ~FAKE_O_BINARY, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "O_BINARY", FAKE_O_BINARY, raising=False)
    monkeypatch.setattr(os, "open", open_)
    return text_mode


def _under(paths: list[str], root: Path) -> list[str]:
    return [p for p in paths if Path(p).resolve().is_relative_to(root.resolve())]


# --- row 15: files of the local store are written in binary mode, and a changed copy is never stored -------------


def test_private_files_are_opened_binary_so_a_checkpoint_keeps_its_line_feeds(windows_crt, tmp_path):
    target = tmp_path / "model.safetensors"
    private_files.write_bytes(target, b"a\nb\n")
    with private_files.open_file(tmp_path / "log.txt", "ab") as f:
        f.write(b"x\n")
    assert windows_crt == []


def test_a_model_copied_into_the_local_store_is_opened_binary(windows_crt, tmp_path):
    from cloudlora.assets import transfer
    from cloudlora.store import LocalStore

    store = LocalStore(tmp_path / "store")
    src = tmp_path / "m.safetensors"
    src.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\n" * 1000 + os.urandom(4096))
    transfer.upload_file(store, "models/m/m.safetensors", src)
    assert _under(windows_crt, tmp_path / "store") == []
    assert (store.root / "models/m/m.safetensors").read_bytes() == src.read_bytes()


def test_a_local_copy_whose_size_differs_from_the_source_is_refused_and_never_stored(tmp_path, monkeypatch):
    """What a text-mode copy did on Windows: LF became CRLF, and the corrupt file was stored under the source's
    sha256. Now the copy is measured before it takes the object's name."""
    from cloudlora.assets import transfer
    from cloudlora.store import LocalStore

    class TextModeFile:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            return self.f.write(bytes(data).replace(b"\n", b"\r\n"))

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    real_open_file = private_files.open_file

    def text_mode_open_file(path, mode="wb", **kwargs):
        f = real_open_file(path, mode, **kwargs)
        return TextModeFile(f) if str(path).endswith(".partial") else f

    monkeypatch.setattr(transfer.private_files, "open_file", text_mode_open_file)
    store = LocalStore(tmp_path / "store")
    src = tmp_path / "image.png"
    src.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2048))
    with pytest.raises(UserError, match="came out"):
        transfer.upload_file(store, "datasets/d/1_x/image.png", src)
    assert store.head("datasets/d/1_x/image.png") is None
    assert not list((store.root / "datasets/d/1_x").glob("*.partial"))


# --- row 16: os.replace over a file another process holds open ----------------------------------------------------


def _flaky_replace(monkeypatch, failures: int) -> list:
    calls = []
    real = os.replace

    def replace(src, dst, **kwargs):
        calls.append(dst)
        if len(calls) <= failures:
            raise PermissionError(13, "The process cannot access the file because it is being used by another "
                                      "process", str(dst))
        return real(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(atomic.time, "sleep", lambda s: None)
    return calls


def test_an_atomic_write_waits_out_a_reader_holding_the_target_open(tmp_path, monkeypatch):
    target = tmp_path / "exit.json"
    target.write_bytes(b"old")
    calls = _flaky_replace(monkeypatch, 3)
    atomic.write_text(target, '{"code": 0}')
    assert target.read_text() == '{"code": 0}' and len(calls) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["exit.json"]  # no temp file left


def test_a_target_that_stays_locked_raises_after_the_retries_and_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    calls = _flaky_replace(monkeypatch, 1000)
    with pytest.raises(PermissionError):
        atomic.write_text(target, "new")
    assert len(calls) == atomic.REPLACE_TRIES
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_settings_hash_cache_and_local_upload_renames_retry_too(tmp_path, monkeypatch):
    from cloudlora import settings
    from cloudlora.assets import hashcache, transfer
    from cloudlora.store import LocalStore

    photo = tmp_path / "photo.png"
    photo.write_bytes(os.urandom(1000))
    _flaky_replace(monkeypatch, 2)
    settings.save({"backend": "local"})
    _flaky_replace(monkeypatch, 2)
    hashcache.sha256_file(photo)
    store = LocalStore(tmp_path / "store")
    real = os.replace
    failed = []

    def replace(src, dst, **kwargs):
        if str(src).endswith(".partial") and len(failed) < 2:
            failed.append(src)
            raise PermissionError(32, "in use", str(dst))
        return real(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    transfer.upload_file(store, "datasets/d/1_x/photo.png", photo)
    assert len(failed) == 2 and (store.root / "datasets/d/1_x/photo.png").read_bytes() == photo.read_bytes()


# --- row 19: the AWS credentials file ------------------------------------------------------------------------------


def test_add_access_key_writes_the_credentials_file_in_binary_mode(windows_crt, isolated_settings):
    from cloudlora.aws import credentials

    path = credentials.credentials_file()
    path.write_bytes(b"[other]\naws_access_key_id = AKIAOTHEROTHER0000\n\n[third]\nregion = x\n")
    credentials.add_access_key("cloudlora", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                               verify=False)
    assert _under(windows_crt, path.parent) == []
    text = path.read_bytes()
    assert b"\r" not in text and text.startswith(b"[other]\naws_access_key_id = AKIAOTHEROTHER0000\n\n[third]\n")
    assert (path.stat().st_mode & 0o777) == 0o600


# --- row 20: `cloudlora train --model D:\models\x.safetensors` is a path, not a store name -------------------------


@pytest.mark.parametrize("value", [r"C:\models\x.safetensors", r"D:\data\ds", "D:ds", r"models\x.safetensors",
                                   r"\\server\share\ds", "/abs/x", "./x", "~/x", "a/b"])
def test_windows_and_posix_paths_look_like_paths(value):
    from cloudlora.cli.train import looks_like_path

    assert looks_like_path(value)


@pytest.mark.parametrize("value", ["my-model", "sd15_base.v2", "demo"])
def test_store_names_do_not_look_like_paths(value):
    from cloudlora.cli.train import looks_like_path

    assert not looks_like_path(value)


def test_a_drive_letter_path_that_does_not_exist_is_reported_as_a_missing_path(tmp_path):
    from cloudlora.cli.train import _resolve
    from cloudlora.store import LocalStore

    store = LocalStore(tmp_path / "store")
    with pytest.raises(UserError, match="does not exist"):
        _resolve("model", r"D:\models\x.safetensors", store)
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*:*"))


# --- row 26: the epoch grid's borrowed LoRAs ------------------------------------------------------------------------


def test_one_epoch_file_held_open_does_not_keep_the_others_in_the_lora_folder(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from cloudlora import host
    from cloudlora.jobs.results import epoch_grid
    from cloudlora.library import pull

    refreshed = []
    monkeypatch.setattr(pull, "lora_dir", lambda settings: tmp_path / "Lora")
    monkeypatch.setattr(pull, "copy_with_metadata", lambda src, dest, updates: dest.write_bytes(b"lora"))
    monkeypatch.setattr(pull, "refresh", lambda: refreshed.append(True) or True)

    def txt2img(job):
        raise RuntimeError("no checkpoint")

    monkeypatch.setattr(host, "_current", host.Host(name="a1111", txt2img=txt2img))
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if self.name.endswith("_e0.safetensors"):
            raise PermissionError(32, "in use", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    src = tmp_path / "x.safetensors"
    src.write_bytes(b"x")
    state = epoch_grid.GridState("j1", "running", 0, 2)
    rec = SimpleNamespace(id="j1")
    epoch_grid._run(state, rec, [("e1", src), ("e2", src)], [1.0], [epoch_grid.Txt2Img("p")], None)
    left = sorted(p.name for p in (tmp_path / "Lora" / epoch_grid.TEMP_FOLDER).iterdir())
    assert left == ["cloudlora_j1_e0.safetensors"]  # only the held one
    assert state.status == "failed" and len(refreshed) == 2  # the Lora list is refreshed after the clean-up


# --- row 28: line endings of a Windows checkout -------------------------------------------------------------------


def test_gitattributes_checks_out_text_with_lf_and_leaves_binaries_alone():
    out = subprocess.run(["git", "check-attr", "text", "eol", "--", "cloud_backend/container/Dockerfile",
                          "install.py", "x.png", "x.safetensors", "x.tar.gz"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    attrs = {}
    for line in out.splitlines():
        path, attr, value = line.split(": ")
        attrs[(path, attr)] = value
    for path in ("cloud_backend/container/Dockerfile", "install.py"):
        assert attrs[(path, "text")] == "auto" and attrs[(path, "eol")] == "lf"
    for path in ("x.png", "x.safetensors", "x.tar.gz"):
        assert attrs[(path, "text")] == "unset"


# --- rows 30, 31: install.py under cmd.exe -------------------------------------------------------------------------


@pytest.fixture
def install_module(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    import install

    return install


def test_the_install_fix_hint_is_quoted_for_cmd_exe_on_windows(install_module, monkeypatch):
    monkeypatch.setattr(install_module, "WINDOWS", True)
    monkeypatch.setattr(sys, "executable", r"C:\stable diffusion webui\venv\Scripts\python.exe")
    hint = install_module.fix_command(["boto3>=1.34,<2", "tomlkit"])
    assert hint == r'"C:\stable diffusion webui\venv\Scripts\python.exe" -m pip install "boto3>=1.34,<2" tomlkit'
    assert "'" not in hint


def test_the_install_fix_hint_stays_posix_quoted_elsewhere(install_module, monkeypatch):
    monkeypatch.setattr(install_module, "WINDOWS", False)
    monkeypatch.setattr(sys, "executable", "/opt/web ui/venv/bin/python")
    assert install_module.fix_command(["boto3>=1.34,<2"]) == "'/opt/web ui/venv/bin/python' -m pip install " \
                                                             "'boto3>=1.34,<2'"


def test_the_failed_install_prints_the_quoted_hint(install_module, monkeypatch, capsys):
    monkeypatch.setattr(install_module, "WINDOWS", True)
    monkeypatch.setattr(install_module, "needed", lambda deps: ["boto3>=1.34,<2"])
    monkeypatch.setattr(install_module, "_import_launch", lambda: None)
    monkeypatch.setattr(install_module, "skip_install_requested", lambda launch: False)

    def install(missing, launch):
        raise RuntimeError("no network")

    monkeypatch.setattr(install_module, "install", install)
    assert install_module.main() == 1
    assert '"boto3>=1.34,<2"' in capsys.readouterr().err


def test_commandline_args_with_a_windows_folder_ending_in_a_backslash(install_module, monkeypatch):
    monkeypatch.setattr(install_module, "WINDOWS", True)
    monkeypatch.setattr(sys, "argv", ["launch.py"])
    monkeypatch.setenv("COMMANDLINE_ARGS", '--lora-dir "D:\\Loras\\" --skip-install --xformers')
    assert install_module.commandline_args() == ["--lora-dir", "D:\\Loras\\", "--skip-install", "--xformers"]
    assert install_module.skip_install_requested() is True


def test_a_malformed_commandline_never_stops_the_installer(install_module, monkeypatch):
    monkeypatch.setattr(install_module, "WINDOWS", False)
    monkeypatch.setattr(sys, "argv", ["launch.py"])
    monkeypatch.setenv("COMMANDLINE_ARGS", '--skip-install --lora-dir "unclosed')
    assert install_module.skip_install_requested() is True


# --- row 32: nvidia-smi outside PATH -------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["nvsmi", "system32"])
def test_nvidia_smi_is_found_in_the_windows_driver_folders(tmp_path, monkeypatch, where):
    program_files, system_root = tmp_path / "Program Files", tmp_path / "Windows"
    folder = program_files / "NVIDIA Corporation" / "NVSMI" if where == "nvsmi" else system_root / "System32"
    folder.mkdir(parents=True)
    (folder / "nvidia-smi.exe").write_bytes(b"MZ")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("ProgramFiles", str(program_files))
    monkeypatch.setenv("SystemRoot", str(system_root))
    monkeypatch.setattr(system, "WINDOWS", True)
    assert system.find_nvidia_smi() == str(folder / "nvidia-smi.exe")
    monkeypatch.setattr(system, "WINDOWS", False)
    assert system.find_nvidia_smi() is None  # those folders mean nothing elsewhere


def test_nvidia_smi_on_path_comes_first(tmp_path, monkeypatch):
    exe = tmp_path / "bin" / "nvidia-smi"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(exe.parent))
    assert system.find_nvidia_smi() == str(exe)


# --- row 33: CLI output under a code page without `·` ---------------------------------------------------------------


def test_the_cli_prints_characters_its_output_cannot_encode_as_question_marks(monkeypatch):
    import argparse

    from cloudlora import cli

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=lambda args: print("Completed · 3 epochs"))
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict")  # like an OEM code page without `·`
    monkeypatch.setattr(sys, "stdout", out)
    assert cli.main([]) == 0
    out.flush()
    assert out.buffer.getvalue() == b"Completed ? 3 epochs\n"
