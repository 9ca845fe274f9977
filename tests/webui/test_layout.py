"""The dataset layouts users bring: Kohya folders, the SageMaker Kohya sample, JumpStart."""
from __future__ import annotations

import json

import pytest

from cloudlora_backend.trainer.data.layout import LayoutError, parse_subset_name, scan


def _touch(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_kohya_parent_folder_gives_each_subset_with_repeats_and_trigger(tmp_path):
    _touch(tmp_path / "100_demo" / "a.png")
    _touch(tmp_path / "100_demo" / "a.txt", "demo, smiling")
    _touch(tmp_path / "100_demo" / "b.JPG")
    _touch(tmp_path / "5_style" / "c.webp")
    _touch(tmp_path / "5_style" / "c.caption", "style")
    _touch(tmp_path / "5_style" / ".DS_Store")
    layout = scan(tmp_path)
    assert layout.kind == "kohya"
    assert [(s.repeats, s.trigger, len(s.items)) for s in layout.subsets] == [(100, "demo", 2), (5, "style", 1)]
    demo = layout.subsets[0]
    assert [i.caption_file.name if i.caption_file else None for i in demo.items] == ["a.txt", None]
    assert layout.images_per_epoch == 205
    assert layout.triggers == ["demo", "style"]


def test_a_single_subset_folder_is_accepted_as_the_root(tmp_path):
    _touch(tmp_path / "20_cat" / "x.png")
    assert scan(tmp_path / "20_cat").subsets[0].trigger == "cat"


def test_orphan_captions_and_other_files_are_reported(tmp_path):
    _touch(tmp_path / "3_x" / "lonely.txt", "no image")
    _touch(tmp_path / "3_x" / "notes.pdf")
    _touch(tmp_path / "3_x" / "y.png")
    subset = scan(tmp_path).subsets[0]
    assert [p.name for p in subset.orphan_captions] == ["lonely.txt"]
    assert [p.name for p in subset.other_files] == ["notes.pdf"]


def test_the_sagemaker_kohya_sample_keeps_its_config(tmp_path):
    _touch(tmp_path / "kohya-sdxl-config.toml", "network_dim = 32\n")
    _touch(tmp_path / "60_dwjz" / "1.jpg")
    _touch(tmp_path / "60_dwjz" / "1.caption", "dwjz")
    layout = scan(tmp_path)
    assert layout.kind == "kohya-sample"
    assert layout.config_file.name == "kohya-sdxl-config.toml"


def test_the_jumpstart_layout_uses_the_instance_prompt(tmp_path):
    _touch(tmp_path / "dataset_info.json", json.dumps({"instance_prompt": "a photo of sks dog", "class_prompt": "a photo of a dog"}))
    _touch(tmp_path / "dog1.png")
    layout = scan(tmp_path)
    assert layout.kind == "jumpstart"
    assert layout.instance_prompt == "a photo of sks dog" and layout.class_prompt == "a photo of a dog"
    assert layout.subsets[0].items[0].image.name == "dog1.png"


@pytest.mark.parametrize("name, message", [
    ("demo", "is not named <repeats>_<trigger>"),
    ("0_demo", "must be a positive integer"),
    ("10_", "is not named"),
])
def test_bad_folder_names_say_what_is_expected(name, message):
    with pytest.raises(LayoutError, match=message):
        parse_subset_name(name)


def test_a_folder_without_subsets_explains_the_naming(tmp_path):
    _touch(tmp_path / "photos" / "a.png")
    with pytest.raises(LayoutError, match="20_mytrigger"):
        scan(tmp_path)


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(LayoutError, match="does not exist"):
        scan(tmp_path / "nope")
