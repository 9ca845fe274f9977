"""A hostile or broken zip is refused by name before it costs memory or disk, leaves nothing behind, and what it
extracts is private; names Windows cannot hold are refused in zips and in dataset folders (issue 20, "Zips" and
"Modes"; WINDOWS.md rows 17 and 18)."""
from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cloudlora.assets import dataset_import, zip_entries
from cloudlora.assets.dataset_check import check_dataset
from cloudlora.errors import UserError
from tests.webui.test_assets_datasets import png, png_bytes, zip_of

SMALL = zip_entries.ZipLimits(ratio_floor_bytes=1 << 20)


def _nothing_left():
    base = dataset_import.imports_dir()
    return not base.exists() or list(base.iterdir()) == []


def _zeros_zip(path: Path, entries: int, extra: dict | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for i in range(entries):
            zf.writestr(f"10_x/{i:04d}.png", b"\0" * ((1 << 20) - 1))
        for name, data in (extra or {}).items():
            zf.writestr(zipfile.ZipInfo(name), data)  # stored: random bytes do not compress
    return path


def test_padding_that_is_never_extracted_does_not_dilute_the_ratio(tmp_path):
    """The report's 14.5 MB zip with 12 MB of random bytes in __MACOSX/pad extracted 2000 MiB; here in small."""
    z = _zeros_zip(tmp_path / "padded.zip", 40, {"__MACOSX/pad": os.urandom(400_000)})
    assert 40 * (1 << 20) < SMALL.max_ratio * z.stat().st_size  # the archive's own size would have let it pass
    with pytest.raises(UserError) as err:
        dataset_import.import_zip(z, SMALL)
    assert "refused as a possible zip bomb" in err.value.message
    assert _nothing_left()


def test_entries_that_are_never_extracted_are_named_in_the_report(tmp_path):
    z = zip_of(tmp_path / "mac.zip", {"10_a/1.png": png_bytes(), "__MACOSX/10_a/._1.png": b"x" * 4096,
                                      "10_a/.DS_Store": b"y"})
    with dataset_import.extracted_for_check(z) as root:
        report = check_dataset(root)
    assert report.ok
    named = {f.path for f in report.warnings if f.code == "not-extracted"}
    assert named == {"__MACOSX/10_a/._1.png", "10_a/.DS_Store"}


def test_the_entry_count_is_read_from_the_end_record_before_the_directory_is_parsed(tmp_path, monkeypatch):
    z = _zeros_zip(tmp_path / "many.zip", 0, {f"10_x/{i}.png": b"" for i in range(30)})
    assert zip_entries.entry_count(z) == 30

    def parse_nothing(*_a, **_k):
        raise AssertionError("the central directory was parsed")

    monkeypatch.setattr(zipfile, "ZipFile", parse_nothing)
    with pytest.raises(UserError) as err:
        dataset_import.import_zip(z, zip_entries.ZipLimits(max_files=10))
    assert "30 entries" in err.value.message


def test_the_zip64_entry_count_is_read_too(tmp_path, monkeypatch):
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 5)  # makes zipfile write the ZIP64 end records
    z = _zeros_zip(tmp_path / "z64.zip", 0, {f"10_x/{i}.png": b"" for i in range(12)})
    monkeypatch.undo()
    raw = bytearray(z.read_bytes())
    assert raw[-22:-18] == b"PK\x05\x06" and raw[-42:-38] == b"PK\x06\x07"  # the ZIP64 locator precedes it
    raw[-22 + 8:-22 + 12] = b"\xff\xff\xff\xff"  # as a real ZIP64 archive says: "see the ZIP64 record"
    z.write_bytes(bytes(raw))
    assert zip_entries.entry_count(z) == 12
    assert zip_entries.entry_count(zip_of(z.with_name("plain.zip"), {"10_x/1.png": b""})) == 1


def _lying(path: Path) -> Path:
    """A zip whose central directory says its one image is 100 bytes shorter than it is."""
    data = png_bytes()
    zip_of(path, {"10_a/1.png": data})
    raw = bytearray(path.read_bytes())
    central = raw.rfind(b"PK\x01\x02")
    (size,) = struct.unpack("<I", raw[central + 24:central + 28])
    assert size == len(data)
    raw[central + 24:central + 28] = struct.pack("<I", size - 100)
    path.write_bytes(bytes(raw))
    return path


def test_a_zip_whose_header_lies_is_a_named_error_and_leaves_nothing(tmp_path):
    z = _lying(tmp_path / "liar.zip")
    with pytest.raises(UserError) as err:
        dataset_import.import_zip(z)
    assert "10_a/1.png" in err.value.message and "header" in err.value.message
    assert _nothing_left()
    run = subprocess.run([sys.executable, "-m", "cloudlora", "dataset", "check", str(z)], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ))
    assert run.returncode == 1 and "Traceback" not in run.stderr and "10_a/1.png" in run.stderr, run.stderr
    assert _nothing_left()


@pytest.mark.parametrize("name", ["10_a/a:b.png", "10_a/CON.png", "10_a/nul.txt", "10_a/com1.png", "LPT9/1.png",
                                  "10_a/1.png.", "10_a/1.png ", "10_a /1.png", "10_a/q?.png", "10_a/a|b.png",
                                  '10_a/"x".png', "10_a/<x>.png", "10_a/x*.png"])
def test_a_zip_entry_windows_cannot_hold_is_refused_by_name(tmp_path, name):
    z = zip_of(tmp_path / "win.zip", {"10_a/ok.png": png_bytes(), name: png_bytes((1, 2, 3))})
    with pytest.raises(UserError) as err:
        dataset_import.import_zip(z)
    assert repr(name) in err.value.message and "Windows" in err.value.message
    assert _nothing_left()


def test_zip_entries_that_differ_only_in_case_are_refused(tmp_path):
    z = zip_of(tmp_path / "case.zip", {"10_a/01.PNG": png_bytes(), "10_a/01.png": png_bytes((1, 2, 3))})
    with pytest.raises(UserError) as err:
        dataset_import.import_zip(z)
    assert "'10_a/01.PNG'" in err.value.message and "'10_a/01.png'" in err.value.message
    assert _nothing_left()


@pytest.mark.skipif(sys.platform == "win32", reason="these names cannot even be created on Windows")
def test_the_dataset_check_and_upload_refuse_names_windows_cannot_hold(tmp_path):
    from cloudlora.assets import datasets

    root = tmp_path / "ds"
    png(root / "10_a" / "ok.png")
    for name in ("a:b.png", "CON.png", "x.png.", "01.PNG", "01.png"):
        (root / "10_a" / name).write_bytes(png_bytes())
    report = check_dataset(root)
    bad = {(f.code, f.path) for f in report.errors}
    assert {("name-not-portable", "10_a/a:b.png"), ("name-not-portable", "10_a/CON.png"),
            ("name-not-portable", "10_a/x.png."), ("names-differ-in-case", "10_a/01.png")} <= bad, bad
    with pytest.raises(UserError):
        datasets.check_or_raise(root)


def _modes(folder: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        out |= {oct(stat.S_IMODE(os.stat(os.path.join(dirpath, d)).st_mode)) for d in dirnames}
        out |= {oct(stat.S_IMODE(os.stat(os.path.join(dirpath, f)).st_mode)) for f in filenames}
    return out


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_every_import_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        dataset_import.import_zip(zip_of(tmp_path / "z.zip", {"10_a/1.png": png_bytes(), "10_a/1.txt": "a"}))
        dataset_import.from_images([png(tmp_path / "drop" / "p.png")], "sks", 5)
        dataset_import.wrap_folder(tmp_path / "drop")
        dataset_import.mark_uploaded(next(dataset_import.imports_dir().iterdir()))
    finally:
        os.umask(old)
    base = dataset_import.imports_dir()
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    assert _modes(base) == {"0o700", "0o600"}, _modes(base)


def test_a_rename_windows_refuses_for_a_moment_is_retried(tmp_path, monkeypatch):
    z = zip_of(tmp_path / "z.zip", {"10_a/1.png": png_bytes()})
    real, calls = Path.replace, []

    def busy_twice(self, target):
        calls.append(self)
        if len(calls) <= 2:
            raise PermissionError(13, "The process cannot access the file (a virus scan)")
        return real(self, target)

    monkeypatch.setattr(Path, "replace", busy_twice)
    monkeypatch.setattr(dataset_import.time, "sleep", lambda _s: None)
    root = dataset_import.import_zip(z)
    assert (root / "10_a" / "1.png").is_file() and len(calls) == 3


def test_a_rename_that_keeps_failing_is_a_named_error_and_leaves_nothing(tmp_path, monkeypatch):
    z = zip_of(tmp_path / "z.zip", {"10_a/1.png": png_bytes()})

    def always_busy(self, target):
        raise PermissionError(13, "The process cannot access the file")

    monkeypatch.setattr(Path, "replace", always_busy)
    monkeypatch.setattr(dataset_import.time, "sleep", lambda _s: None)
    with pytest.raises(UserError) as err:
        dataset_import.import_zip(z)
    assert "Could not move the extracted dataset" in err.value.message
    assert _nothing_left()


def test_a_half_extracted_folder_with_read_only_files_is_removed(tmp_path):
    stale = dataset_import.imports_dir() / "stale"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "1.png").write_bytes(b"x")
    os.chmod(stale / "sub" / "1.png", 0o400)
    os.chmod(stale / "sub", 0o500)
    dataset_import._remove_tree(stale)
    assert not stale.exists()
