"""Hostile or broken files never hang a check, fill the disk, blow its memory, or stop the UI from loading; each is
named with the fix. (The corpus of ordinary dataset problems is in test_assets_datasets.py.)"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
import zlib
from pathlib import Path

import pytest

from cloudlora.assets import dataset_import, dataset_prepare, datasets, models
from cloudlora.assets.dataset_check import check_dataset
from cloudlora.errors import UserError
from cloudlora.store import LocalStore
from tests.webui.test_assets_datasets import good_dataset, png, text

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args, timeout=120, cwd=None, **kw):
    return subprocess.run([sys.executable, "-m", "cloudlora", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ), cwd=cwd, **kw)


def _within(seconds: float, fn):
    """fn() in a thread; fails (instead of hanging the suite) when it does not return in time."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised below
            box["error"] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still blocked after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def _unblock(fifo: Path) -> None:
    """Lets a reader that is stuck on `fifo` go (an end of file), so a failing test leaves no thread behind."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass


# --- files that are not files -------------------------------------------------------------------------------------

def test_a_fifo_named_like_an_image_or_a_caption_is_named_and_refused_never_opened(tmp_path):
    root = good_dataset(tmp_path / "ds", n=2)
    fifo, caption_fifo = root / "10_demo" / "07.png", root / "10_demo" / "1.txt"
    (root / "10_demo" / "1.txt").unlink()
    os.mkfifo(fifo)
    os.mkfifo(caption_fifo)
    try:
        run = _cli("dataset", "check", str(root), timeout=60)  # it used to wait forever
        assert run.returncode == 1, run.stdout + run.stderr
        assert "10_demo/07.png: This is a named pipe (FIFO), not a file" in run.stdout
        assert "10_demo/1.txt: This is a named pipe (FIFO)" in run.stdout
        store = LocalStore(tmp_path / "store")
        with pytest.raises(UserError, match="nothing was uploaded"):
            _within(30, lambda: datasets.upload_dataset(store, root))
        with pytest.raises(UserError, match="not a regular file"):  # the caption editor never opens it either
            _within(10, lambda: dataset_prepare.read_caption(root, root / "10_demo" / "1.png"))
    finally:
        _unblock(fifo)
        _unblock(caption_fifo)


# --- numbers that break things --------------------------------------------------------------------------------------

def test_an_absurd_repeat_count_is_refused_before_upload(tmp_path):
    root = good_dataset(tmp_path / "ds", n=1)
    png(root / "999999999999999999999999999999_x" / "a.png")
    report = check_dataset(root)
    found = [f for f in report.errors if f.code == "too-many-repeats"]
    assert found and found[0].path == "999999999999999999999999999999_x", report.text()
    assert "more than 10000" in found[0].message
    with pytest.raises(UserError, match="nothing was uploaded"):
        datasets.upload_dataset(LocalStore(tmp_path / "store"), root)


def test_a_broken_record_in_the_store_is_skipped_and_reported_and_never_stops_a_listing(tmp_path, monkeypatch,
                                                                                       api_client):
    import orjson
    from fastapi import FastAPI

    from cloudlora.api import mount
    from cloudlora.ui import checkpoints_panel, datasets_panel

    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    store = LocalStore(tmp_path / "store")
    datasets.upload_dataset(store, good_dataset(tmp_path / "ok", n=1), name="ok")
    huge = json.loads(store.get_bytes("datasets/ok/manifest.json"))
    huge.update(name="huge", images_per_epoch=6 * 10 ** 30)  # what a 999…9_x folder used to put there
    store.put_bytes("datasets/huge/manifest.json", json.dumps(huge).encode())
    store.put_bytes("datasets/garbled/manifest.json", b'{"name": "garbled", "size": ')
    store.put_bytes("models/odd/manifest.json", json.dumps({"name": "odd", "size": "big"}).encode())

    broken: list = []
    assert [d["name"] for d in datasets.list_datasets(store, broken)] == ["ok"]
    problems = {b["key"]: b["problem"] for b in broken}
    assert set(problems) == {"datasets/garbled/manifest.json", "datasets/huge/manifest.json"}
    assert problems["datasets/huge/manifest.json"] == "images_per_epoch is 31 digits long"
    assert problems["datasets/garbled/manifest.json"].startswith("it is not valid JSON")
    rows, total = datasets_panel.dataset_rows()  # what the UI sends to the browser on load
    orjson.dumps({"rows": rows, "total": total})
    assert [r[0] for r in rows] == ["ok"] and "Skipped 2 broken dataset record(s)" in total
    mrows, mtotal = checkpoints_panel.model_rows()
    assert mrows == [] and "models/odd/manifest.json: size is 'big', not a count" in mtotal

    listed = _cli("dataset", "list")
    assert listed.returncode == 0 and "ok" in listed.stdout and "Skipped 2 broken dataset record(s)" in listed.stderr
    app = FastAPI()
    mount(app, None)
    r = api_client(app).get("/cloudlora/v1/datasets")
    assert r.status_code == 200 and [d["name"] for d in r.json()["datasets"]] == ["ok"]
    assert len(r.json()["broken"]) == 2
    assert _cli("dataset", "rm", "huge", "--yes").returncode == 0  # the fix it names works
    assert [b["key"] for b in json.loads(_cli("dataset", "list", "--json").stdout)["broken"]] == [
        "datasets/garbled/manifest.json"]


# --- archives ---------------------------------------------------------------------------------------------------

def _bomb_zip(path: Path, entries: int = 300, size: int = (1 << 20) - 1) -> Path:
    """Many entries just under the 1 MiB a single-entry ratio check starts at: small zip, big extraction."""
    zeros = b"\0" * size
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for i in range(entries):
            zf.writestr(f"10_x/{i:04d}.png", zeros)
    return path


def test_a_small_zip_that_would_extract_hundreds_of_mib_is_refused_before_anything_is_written(tmp_path):
    z = _bomb_zip(tmp_path / "small.zip")
    assert z.stat().st_size < 2 << 20
    with pytest.raises(UserError) as err:
        dataset_import.import_zip(z)
    assert "refused as a possible zip bomb" in err.value.message and "299 MiB" in err.value.message
    assert not dataset_import.imports_dir().exists() or list(dataset_import.imports_dir().iterdir()) == []
    run = _cli("dataset", "check", str(z))
    assert run.returncode == 1 and "zip bomb" in run.stderr


def test_extractions_never_uploaded_are_cleaned_up_and_a_check_leaves_nothing_behind(tmp_path):
    from tests.webui.test_assets_datasets import png_bytes, zip_of

    checked = zip_of(tmp_path / "checked.zip", {"10_a/1.png": png_bytes(), "10_a/1.txt": "a"})
    run = _cli("dataset", "check", str(checked))
    assert run.returncode == 0, run.stdout + run.stderr
    imports = dataset_import.imports_dir()
    assert not imports.exists() or list(imports.iterdir()) == [], "a check keeps no extraction"

    uploaded = dataset_import.import_zip(zip_of(tmp_path / "up.zip", {"10_b/1.png": png_bytes((1, 2, 3))}))
    datasets.upload_dataset(LocalStore(tmp_path / "store"), uploaded)
    forgotten = dataset_import.import_zip(zip_of(tmp_path / "old.zip", {"10_c/1.png": png_bytes((4, 5, 6))}))
    day_ago = time.time() - 25 * 3600
    for folder in (dataset_import.import_folder_of(uploaded), dataset_import.import_folder_of(forgotten)):
        os.utime(folder, (day_ago, day_ago))
    fresh = dataset_import.import_zip(zip_of(tmp_path / "new.zip", {"10_d/1.png": png_bytes((7, 8, 9))}))
    assert not forgotten.exists(), "a day-old import that was never uploaded is removed by the next import"
    assert uploaded.exists() and fresh.exists()


# --- images that cost memory ------------------------------------------------------------------------------------

def _big_png(path: Path, width: int = 12000, height: int = 12000, cut: int = 0) -> Path:
    """A real width x height RGB PNG (zeros compress ~1000:1), written row by row: its memory never exists here."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    deflate = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * width)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        pending = b""
        for _ in range(height):
            pending += deflate.compress(row)
            if len(pending) > 1 << 16:
                f.write(chunk(b"IDAT", pending))
                pending = b""
        pending += deflate.flush()
        f.write(chunk(b"IDAT", pending[:len(pending) - cut]) + chunk(b"IEND", b""))
    return path


MEASURE = textwrap.dedent("""
    import sys, time
    from cloudlora.assets.dataset_check import check_dataset
    t = time.monotonic()
    report = check_dataset(sys.argv[1])
    print(report.text())
    print("SECONDS", time.monotonic() - t)
    # VmHWM: this program's own peak (ru_maxrss would count the parent's memory, inherited through fork and exec)
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print("PEAK_MIB", int(hwm.split()[1]) / 1024)
""")


def test_checking_four_12000px_pngs_keeps_its_memory_bounded_and_still_finds_a_truncated_one(tmp_path):
    folder = tmp_path / "ds" / "10_big"
    folder.mkdir(parents=True)
    first = _big_png(folder / "a.png")
    assert first.stat().st_size < 1 << 20  # ~420 KB on disk, 432 MB of pixels
    for name in ("b.png", "c.png"):
        (folder / name).write_bytes(first.read_bytes())
    _big_png(folder / "d.png", cut=200)  # the end of its image data is missing, its CRCs are consistent
    run = subprocess.run([sys.executable, "-c", MEASURE, str(tmp_path / "ds")], capture_output=True, text=True,
                         timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    peak = float(out.split("PEAK_MIB")[1].split()[0])
    seconds = float(out.split("SECONDS")[1].split()[0])
    assert peak < 150, f"the check peaked at {peak:.0f} MiB (it used to take 593 MB per image)"
    assert "10_big/a.png: The image is 12000x12000 px" in out  # the huge-image warning, so it was read
    assert "10_big/d.png: The image cannot be read (its image data is incomplete" in out, out
    print(f"four 12000x12000 PNGs: {seconds:.1f} s, peak {peak:.0f} MiB")


# --- the smaller ones ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["demo\n"])
def test_a_name_with_a_newline_is_refused(tmp_path, name):
    with pytest.raises(UserError, match="is not a valid dataset name"):
        datasets.upload_dataset(LocalStore(tmp_path / "store"), good_dataset(tmp_path / "ds", n=1), name=name)
    with pytest.raises(UserError, match="is not a valid model name"):
        models.check_name(name)


def test_a_listing_cut_off_by_head_ends_quietly(tmp_path):
    env = {**os.environ, "CLOUDLORA_STORE": str(tmp_path / "store")}
    read, write = os.pipe()
    os.close(read)  # the reader is gone before a byte is written, like `cloudlora jobs | head -1` after its line
    proc = subprocess.run([sys.executable, "-m", "cloudlora", "jobs"], stdout=write,
                          stderr=subprocess.PIPE, text=True, timeout=120, env=env)
    os.close(write)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode == 141


def test_a_symlink_loop_an_empty_image_and_a_bom_are_each_named_for_what_they_are(tmp_path):
    root = good_dataset(tmp_path / "ds", n=2)
    os.symlink("b.png", root / "10_demo" / "a.png")
    os.symlink("a.png", root / "10_demo" / "b.png")
    text(root / "10_demo" / "empty.png", b"")
    text(root / "10_demo" / "0.txt", "\ufeffdemo, a red square")  # saved by an editor that writes a BOM
    report = check_dataset(root)
    found = {f.code: f for f in report.findings if f.path in ("10_demo/a.png", "10_demo/empty.png")}
    assert "loop" in found["symlink-loop"].message and "outside" not in found["symlink-loop"].message
    assert found["corrupt-image"].message == "The image cannot be read (the file is empty: 0 bytes)."
    assert "BytesIO" not in report.text()
    captions = {Path(i["image"]).name: i["caption"] for i in report.items}
    assert captions["0.png"] == "demo, a red square"


def test_train_with_a_bare_name_never_uploads_the_local_folder_over_a_half_uploaded_one(tmp_path, monkeypatch,
                                                                                        tiny_sd15):
    store_dir = tmp_path / "store"
    monkeypatch.setenv("CLOUDLORA_STORE", str(store_dir))
    store = LocalStore(store_dir)
    models.upload_model(store, tiny_sd15, name="tiny")
    here = tmp_path / "cwd"
    good_dataset(here / "demo", n=1)
    datasets.upload_dataset(store, here / "demo", name="demo")
    store.delete("datasets/demo/manifest.json")  # an interrupted upload: files, no manifest
    before = sorted(o.key for o in store.list(""))
    run = _cli("train", "--model", "tiny", "--dataset", "demo", cwd=here)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "'demo' in the store is half-uploaded" in run.stderr and "--dataset ./demo" in run.stderr
    assert sorted(o.key for o in store.list("")) == before, "nothing was uploaded"

    run = _cli("train", "--model", "not-there", "--dataset", "./demo", cwd=here)  # the model is checked first
    assert run.returncode == 1 and "The model 'not-there' is not in the store" in run.stderr, run.stderr
    assert sorted(o.key for o in store.list("")) == before, "the dataset was not uploaded for a job that cannot run"
