"""Datasets: every problem of the broken-dataset corpus is named with its file and blocks (or warns), nothing
outside the folder is read, zips are extracted safely, and uploads are per-file deduplicated and resumable."""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from cloudlora.assets import dataset_import, datasets, zip_entries
from cloudlora.assets.dataset_check import check_dataset
from cloudlora.errors import UserError
from cloudlora.store import LocalStore, open_store


def png(path: Path, size=(320, 320), color=(200, 30, 30), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


def jpg(path: Path, size=(320, 320), color=(20, 30, 230)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, quality=90)
    return path


def text(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def good_dataset(root: Path, n: int = 3, trigger: str = "demo", repeats: int = 10) -> Path:
    for i in range(n):
        png(root / f"{repeats}_{trigger}" / f"{i}.png", color=(i * 40, 100, 200))
        text(root / f"{repeats}_{trigger}" / f"{i}.txt", f"{trigger}, a red square number {i}")
    return root


def codes(report, level):
    return {(f.code, f.path) for f in report.findings if f.level == level}


def test_a_good_dataset_has_a_summary_and_no_problem(tmp_path):
    root = good_dataset(tmp_path / "ds", n=3)
    png(root / "5_style" / "a.png")
    text(root / "5_style" / "a.caption", "style, painting")
    text(root / "10_demo" / ".DS_Store", "junk")
    text(root / "Thumbs.db", "junk")
    png(root / "__MACOSX" / "10_demo" / "._0.png")
    report = check_dataset(root)
    assert report.ok and not report.warnings, report.text()
    s = report.summary
    assert (s["images"], s["captions"], s["images_per_epoch"]) == (4, 4, 35)
    assert s["triggers"] == ["demo", "style"] and s["repeats"] == {"10_demo": 10, "5_style": 5}
    assert len(report.items) == 4 and report.items[0]["caption"] == "demo, a red square number 0"


# One case per bullet of the issue: (how to break it, level, code, path, words of the message)
def bad_folder_name(root):
    png(root / "demo" / "a.png")


def repeats_zero(root):
    png(root / "0_demo" / "a.png")


def image_without_caption(root):
    png(root / "10_demo" / "lonely.png")


def caption_without_image(root):
    text(root / "10_demo" / "ghost.txt", "demo")


def corrupt_image(root):
    text(root / "10_demo" / "broken.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)


def truncated_jpeg(root):
    data = io.BytesIO()
    Image.effect_noise((400, 400), 60).convert("RGB").save(data, "JPEG", quality=95)
    text(root / "10_demo" / "cut.jpg", data.getvalue()[: len(data.getvalue()) // 2])


def unsupported_image(root):
    Image.new("RGB", (300, 300)).save(root / "10_demo" / "anim.gif")


def tiny_image(root):
    png(root / "10_demo" / "tiny.png", size=(100, 300))


def huge_image(root):
    png(root / "10_demo" / "huge.png", size=(9000, 300), mode="L", color=0)


def duplicate_image(root):
    (root / "10_demo" / "copy.png").write_bytes((root / "10_demo" / "0.png").read_bytes())


def non_utf8_caption(root):
    text(root / "10_demo" / "0.txt", "caf\xe9 au lait".encode("latin-1"))


def empty_dataset(root):
    for p in (root / "10_demo").iterdir():
        p.unlink()


def symlink_out(root):
    os.symlink("/etc/passwd", root / "10_demo" / "passwd.png")


def symlink_caption_out(root):
    os.symlink("/etc/passwd", root / "10_demo" / "0.txt.tmp")
    (root / "10_demo" / "0.txt").unlink()
    os.replace(root / "10_demo" / "0.txt.tmp", root / "10_demo" / "0.txt")


CORPUS = [
    (bad_folder_name, "error", "bad-folder-name", "demo", "is not named <repeats>_<trigger>"),
    (repeats_zero, "error", "repeats-not-positive", "0_demo", "must be a positive integer"),
    (image_without_caption, "warning", "missing-caption", "10_demo/lonely.png", "the trigger word 'demo' is used"),
    (caption_without_image, "warning", "caption-without-image", "10_demo/ghost.txt", "has no image"),
    (corrupt_image, "error", "corrupt-image", "10_demo/broken.png", "cannot be read"),
    (truncated_jpeg, "error", "corrupt-image", "10_demo/cut.jpg", "cannot be read"),
    (unsupported_image, "error", "unsupported-image", "10_demo/anim.gif", "not supported"),
    (tiny_image, "warning", "tiny-image", "10_demo/tiny.png", "100x300"),
    (huge_image, "warning", "huge-image", "10_demo/huge.png", "9000x300"),
    (duplicate_image, "warning", "duplicate-image", "10_demo/copy.png", "same image as 10_demo/0.png"),
    (non_utf8_caption, "error", "caption-not-utf8", "10_demo/0.txt", "not UTF-8"),
    (empty_dataset, "error", "empty-dataset", "", "no usable image"),
    (symlink_out, "error", "symlink-outside", "10_demo/passwd.png", "outside the dataset folder"),
    (symlink_caption_out, "error", "symlink-outside", "10_demo/0.txt", "outside the dataset folder"),
]


@pytest.mark.parametrize("breaker, level, code, path, words", CORPUS, ids=[c[0].__name__ for c in CORPUS])
def test_the_broken_dataset_corpus_names_each_problem_and_errors_upload_nothing(
        tmp_path, breaker, level, code, path, words):
    root = good_dataset(tmp_path / "ds", n=2)
    breaker(root)
    report = check_dataset(root)
    found = [f for f in report.findings if f.code == code and f.path == path]
    assert found, report.text()
    assert found[0].level == level and words in found[0].message, found[0]
    assert "root:x:" not in json.dumps(report.to_dict())  # /etc/passwd is never read
    store = LocalStore(tmp_path / "store")
    if level == "error":
        with pytest.raises(UserError, match="nothing was uploaded"):
            datasets.upload_dataset(store, root)
        assert list(store.list("")) == []
    else:
        assert report.ok
        datasets.upload_dataset(store, root)
        assert [d["name"] for d in datasets.list_datasets(store)] == ["ds"]


def test_a_symlink_to_etc_passwd_is_never_uploaded_even_inside_a_good_dataset(tmp_path):
    root = good_dataset(tmp_path / "ds", n=2)
    symlink_out(root)
    assert not check_dataset(root).ok
    os.unlink(root / "10_demo" / "passwd.png")
    assert check_dataset(root).ok


def zip_of(path: Path, entries: dict, symlinks: dict | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return path


def png_bytes(color=(10, 200, 10)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (300, 300), color).save(out, "PNG")
    return out.getvalue()


def test_a_zip_is_extracted_into_a_new_folder_and_checks_clean(tmp_path):
    z = zip_of(tmp_path / "mydata.zip", {"mydata/20_cat/1.png": png_bytes(), "mydata/20_cat/1.txt": "cat",
                                         "__MACOSX/mydata/20_cat/._1.png": b"junk"})
    root = dataset_import.import_zip(z)
    assert root.name == "mydata" and dataset_import.imports_dir() in root.parents
    report = check_dataset(root)
    assert report.ok and report.summary["images"] == 1
    assert not (root.parent / "__MACOSX").exists()


@pytest.mark.parametrize("entries, symlinks, words", [
    ({"../evil.png": png_bytes()}, None, "zip-slip"),
    ({"ok/../../evil.png": png_bytes()}, None, "zip-slip"),
    ({"/etc/evil.png": png_bytes()}, None, "absolute path"),
    ({"10_x/1.png": png_bytes()}, {"10_x/passwd.txt": "/etc/passwd"}, "symbolic link"),
    ({"10_x/bomb.png": b"\0" * (8 << 20)}, None, "zip bomb"),
])
def test_a_dangerous_zip_is_refused_and_nothing_is_extracted(tmp_path, entries, symlinks, words):
    z = zip_of(tmp_path / "bad.zip", entries, symlinks)
    with pytest.raises(UserError, match=words):
        dataset_import.import_zip(z)
    assert not (tmp_path / "evil.png").exists() and not (tmp_path.parent / "evil.png").exists()
    assert not dataset_import.imports_dir().exists() or not any(dataset_import.imports_dir().iterdir())


def test_too_many_or_too_large_zip_entries_are_refused(tmp_path):
    z = zip_of(tmp_path / "many.zip", {f"10_x/{i}.txt": "x" for i in range(30)})
    with pytest.raises(UserError, match="30 entries"):
        dataset_import.import_zip(z, zip_entries.ZipLimits(max_files=20))
    z2 = zip_of(tmp_path / "big.zip", {"10_x/a.png": png_bytes(), "10_x/b.png": png_bytes((1, 2, 3))})
    with pytest.raises(UserError, match="more than 0 MiB"):
        dataset_import.import_zip(z2, zip_entries.ZipLimits(max_total_bytes=1000))


def test_dropped_images_with_a_trigger_and_repeats_become_a_kohya_folder(tmp_path):
    a = png(tmp_path / "drop" / "My Photo.png")
    b = jpg(tmp_path / "drop" / "other.jpg")
    text(tmp_path / "drop" / "other.txt", "sks, a blue square")
    root = dataset_import.from_images([a, b], "sks", 15)
    assert sorted(p.name for p in (root / "15_sks").iterdir()) == ["My_Photo.png", "other.jpg", "other.txt"]
    report = check_dataset(root)
    assert report.ok and report.summary["images_per_epoch"] == 30
    assert a.exists() and b.exists()  # copied, never moved
    with pytest.raises(UserError, match="positive whole number"):
        dataset_import.from_images([a], "sks", 0)
    with pytest.raises(UserError, match="cannot be a trigger word"):
        dataset_import.from_images([a], "a/b", 5)


def test_the_jumpstart_and_kohya_sample_layouts_upload_with_their_files(tmp_path):
    js = tmp_path / "js"
    png(js / "dog1.png")
    text(js / "dataset_info.json", json.dumps({"instance_prompt": "a photo of sks dog"}))
    ks = tmp_path / "ks"
    png(ks / "60_dwjz" / "1.png")
    text(ks / "60_dwjz" / "1.caption", "dwjz")
    text(ks / "kohya-sdxl-config.toml", "network_dim = 32\n")
    store = LocalStore(tmp_path / "store")
    m1 = datasets.upload_dataset(store, js)
    m2 = datasets.upload_dataset(store, ks)
    assert m1["kind"] == "jumpstart" and m1["triggers"] == ["a photo of sks dog"]
    assert m2["kind"] == "kohya-sample" and m2["config_file"] == "kohya-sdxl-config.toml"
    keys = {o.key for o in store.list("datasets/")}
    assert {"datasets/js/dataset_info.json", "datasets/js/dog1.png", "datasets/ks/kohya-sdxl-config.toml",
            "datasets/ks/60_dwjz/1.png", "datasets/ks/60_dwjz/1.caption"} <= keys


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return open_store(request.getfixturevalue("s3_settings"))


def test_a_dataset_upload_is_listed_and_a_rerun_sends_only_what_changed(store, tmp_path):
    root = good_dataset(tmp_path / "faces", n=4)
    seen = []
    first = datasets.upload_dataset(store, root, progress=seen.append)
    assert first["files_sent"] == 8 and first["bytes_sent"] > 0
    assert seen[-1].phase == "done" and seen[-1].files_done == 8
    assert {p.item for p in seen if p.phase == "uploading"} >= {"10_demo/0.png"}
    listed = datasets.list_datasets(store)
    assert [(d["name"], d["images"], d["images_per_epoch"], d["triggers"]) for d in listed] == \
        [("faces", 4, 40, ["demo"])]
    again = datasets.upload_dataset(store, root)
    assert again["deduplicated"] and again["bytes_sent"] == 0
    text(root / "10_demo" / "0.txt", "demo, edited caption")
    (root / "10_demo" / "3.txt").unlink()
    third = datasets.upload_dataset(store, root)
    assert third["files_sent"] == 1 and third["files_skipped"] == 6
    assert store.head("datasets/faces/10_demo/3.txt") is None  # removed files go from the store too
    assert store.get_bytes("datasets/faces/10_demo/0.txt").decode().startswith("demo, edited")
    assert datasets.usage(store) > 0
    assert datasets.delete_dataset(store, "faces") > 0
    assert datasets.list_datasets(store) == []


def test_an_interrupted_dataset_upload_never_lists_and_resumes(store, tmp_path):
    from cloudlora.assets.transfer import Cancelled
    import threading

    root = good_dataset(tmp_path / "half", n=6)
    cancel = threading.Event()

    def stop_midway(p):
        if p.phase == "uploading" and p.files_done >= 3:
            cancel.set()

    with pytest.raises(Cancelled):
        datasets.upload_dataset(store, root, progress=stop_midway, cancel=cancel, threads=1)
    assert datasets.list_datasets(store) == []  # no manifest: not complete
    sent_before = len([o for o in store.list("datasets/half/")])
    assert 0 < sent_before < 12
    resumed = datasets.upload_dataset(store, root)
    assert resumed["files_sent"] == 12 - sent_before
    assert [d["name"] for d in datasets.list_datasets(store)] == ["half"]


def test_the_same_zip_is_extracted_once(tmp_path):
    z = zip_of(tmp_path / "again.zip", {"10_x/1.png": png_bytes()})
    first = dataset_import.import_zip(z)
    second = dataset_import.import_zip(z)
    assert first == second and len(list(dataset_import.imports_dir().iterdir())) == 1
    assert check_dataset(first).ok and [p.name for p in first.rglob("*") if p.is_file() and
                                        not p.name.startswith(".")] == ["1.png"]
