"""Working on a dataset: caption editing stays inside the folder, auto-caption uses the host's interrogator with the
trigger word first, and preparation writes a resized RGB copy without touching the originals."""
from __future__ import annotations

import hashlib

import pytest
from PIL import Image

from cloudlora import host
from cloudlora.assets import dataset_prepare
from cloudlora.assets.dataset_check import check_dataset
from cloudlora.errors import UserError
from tests.webui.test_assets_datasets import good_dataset, png, text


def digest_tree(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_caption_is_read_edited_and_saved_beside_its_image(tmp_path):
    root = good_dataset(tmp_path / "ds", n=1)
    image = root / "10_demo" / "0.png"
    assert dataset_prepare.read_caption(root, image) == "demo, a red square number 0"
    dataset_prepare.write_caption(root, image, "demo,   a  new\ncaption ")
    assert (root / "10_demo" / "0.txt").read_text(encoding="utf-8") == "demo, a new caption\n"
    png(root / "10_demo" / "1.png")
    text(root / "10_demo" / "1.caption", "old style caption")
    dataset_prepare.write_caption(root, root / "10_demo" / "1.png", "demo, kept in its .caption file")
    assert (root / "10_demo" / "1.caption").read_text(encoding="utf-8").startswith("demo, kept")
    assert not (root / "10_demo" / "1.txt").exists()


def test_captions_outside_the_dataset_folder_are_refused(tmp_path):
    root = good_dataset(tmp_path / "ds", n=1)
    outside = png(tmp_path / "elsewhere.png")
    with pytest.raises(UserError, match="not inside the dataset folder"):
        dataset_prepare.write_caption(root, outside, "x")
    assert not (tmp_path / "elsewhere.txt").exists()


def test_auto_caption_needs_the_webui_and_puts_the_trigger_word_first(tmp_path, monkeypatch):
    root = good_dataset(tmp_path / "ds", n=1)
    png(root / "10_demo" / "new.png")
    assert not dataset_prepare.can_autocaption()
    with pytest.raises(UserError, match="only there inside A1111"):
        dataset_prepare.autocaption(root)
    seen = []

    def interrogate(image):
        seen.append(image.size)
        return "a green square on a table"

    monkeypatch.setattr(host, "_current", host.Host(name="a1111", interrogate=interrogate))
    assert dataset_prepare.can_autocaption()
    written = dataset_prepare.autocaption(root)
    assert written == ["10_demo/new.png"] and seen == [(320, 320)]  # only the image without a caption
    assert (root / "10_demo" / "new.txt").read_text(encoding="utf-8").strip() == "demo, a green square on a table"
    assert dataset_prepare.read_caption(root, root / "10_demo" / "0.png") == "demo, a red square number 0"


def test_preparing_writes_a_resized_rgb_copy_and_leaves_the_originals_alone(tmp_path):
    root = tmp_path / "ds"
    png(root / "5_cat" / "wide.png", size=(3000, 1500))
    png(root / "5_cat" / "rgba.png", size=(800, 800), mode="RGBA", color=(0, 0, 0, 0))
    png(root / "5_cat" / "small.png", size=(300, 260))
    text(root / "5_cat" / "wide.txt", "cat, wide")
    before = digest_tree(root)
    out = dataset_prepare.prepare(root, "sd15")
    assert digest_tree(root) == before
    assert out != root and out.exists()
    with Image.open(out / "5_cat" / "wide.png") as img:
        w, h = img.size
        assert img.mode == "RGB" and w % 64 == 0 and h % 64 == 0
        assert abs(w * h - 512 * 512) / (512 * 512) < 0.25 and abs(w / h - 2) < 0.3
    with Image.open(out / "5_cat" / "rgba.png") as img:
        assert img.mode == "RGB" and img.size == (512, 512) and img.getpixel((5, 5)) == (255, 255, 255)
    with Image.open(out / "5_cat" / "small.png") as img:
        assert img.size == (256, 256)  # never upscaled, only cropped to multiples of 64
    assert (out / "5_cat" / "wide.txt").read_text() == "cat, wide"
    report = check_dataset(out)
    assert report.summary["images"] == 3 and report.summary["images_per_epoch"] == 15
    xl = dataset_prepare.prepare(root, "sdxl")
    with Image.open(xl / "5_cat" / "wide.png") as img:
        assert abs(img.size[0] * img.size[1] - 1024 * 1024) / (1024 * 1024) < 0.25
    assert xl != out


def test_target_sizes_keep_the_aspect_and_the_bucket_step():
    assert dataset_prepare.target_size(4000, 4000, 1024) == (1024, 1024)
    assert dataset_prepare.target_size(600, 400, 1024) == (576, 384)
    w, h = dataset_prepare.target_size(1920, 1080, 512)
    assert w % 64 == 0 and h % 64 == 0 and w > h
