"""Auto-captioning with tags (issue 23): a user points the WD14 tagger at a Kohya dataset and gets a caption file
beside each image, the trigger word first, their own captions kept unless they ask otherwise.

The tagger is tiny but real (an ONNX graph with wd-*-tagger-v3's signature, run by onnxruntime): "1girl" 0.90,
"long_hair" 0.70, "^_^" 0.50, "solo" 0.30; characters "hatsune_miku" 0.90, "kagamine_rin" 0.60; ratings "general"
0.95, "sensitive" 0.60; "red_theme" / "blue_theme" only on a red / blue image.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloudlora_backend.trainer.captions import write
from cloudlora_backend.trainer.captions.run import caption_dataset
from cloudlora_backend.trainer.captions.wd14 import TagOptions, Wd14Tagger

from .captions_helpers import BLUE, RED, caption_of, image, run_cli, tiny_wd14  # noqa: F401 - fixture


def test_a_kohya_dataset_gets_tag_captions_with_each_folders_trigger_first(tmp_path, tiny_wd14):
    red = image(tmp_path / "ds" / "10_miku" / "a.png", RED)
    blue = image(tmp_path / "ds" / "3_rin" / "b.jpg", BLUE)
    summary = caption_dataset(tmp_path / "ds", Wd14Tagger(tiny_wd14, "cpu"), mode="keep")

    # Characters first (by confidence), then general tags; underscores become spaces but the kaomoji stays;
    # "solo" (0.30) is under the 0.35 threshold, "kagamine_rin" (0.60) under the character threshold 0.85;
    # no rating tag; the BGR input order is right: only the red image is "red theme" (0.78).
    assert caption_of(red) == "miku, hatsune miku, 1girl, red theme, long hair, ^_^"
    assert caption_of(blue) == "rin, hatsune miku, 1girl, blue theme, long hair, ^_^"
    assert summary["written"] == 2 and summary["kept"] == 0
    assert summary["tags"]["1girl"] == 2 and summary["tags"]["miku"] == 1 and "general" not in summary["tags"]


def test_thresholds_for_general_and_character_tags_and_the_exclude_list(tmp_path, tiny_wd14):
    img = image(tmp_path / "5_x" / "a.png")
    tagger = Wd14Tagger(tiny_wd14, "cpu", TagOptions(threshold=0.25, character_threshold=0.5,
                                                      exclude=["long_hair", "^_^", " hatsune miku "]))
    caption_dataset(tmp_path / "5_x", tagger, mode="replace")
    # Lower thresholds bring in "solo" and "kagamine rin"; excluded tags go in either spelling.
    assert caption_of(img) == "x, kagamine rin, 1girl, solo"


@pytest.mark.parametrize("mode, expected", [
    ("keep", "my own words, miku"),
    ("append", "miku, my own words, hatsune miku, 1girl, long hair, ^_^"),
    ("replace", "miku, hatsune miku, 1girl, long hair, ^_^"),
])
def test_existing_captions_are_kept_appended_to_or_replaced(tmp_path, tiny_wd14, mode, expected):
    old = image(tmp_path / "10_miku" / "old.png")
    old.with_suffix(".txt").write_text("my own words, miku\n", encoding="utf-8")
    new = image(tmp_path / "10_miku" / "new.png")
    summary = caption_dataset(tmp_path / "10_miku", Wd14Tagger(tiny_wd14, "cpu"), mode=mode)
    assert caption_of(old) == expected
    assert caption_of(new) == "miku, hatsune miku, 1girl, long hair, ^_^"  # an image without a caption gets one
    assert (summary["written"], summary["kept"]) == ((1, 1) if mode == "keep" else (2, 0))


def test_the_trigger_word_is_never_repeated_and_an_empty_caption_counts_as_none():
    assert write.merge("", ["Demo", "1girl"], "demo", "replace") == "demo, 1girl"
    assert write.merge("1girl, demo", ["demo", "smile"], "demo", "append") == "demo, 1girl, smile"
    assert write.merge("  \n", ["1girl"], "demo", "keep") == "demo, 1girl"
    assert write.merge("a, b", ["c"], "", "keep") is None


def test_a_dataset_using_dot_caption_files_keeps_using_them(tmp_path, tiny_wd14):
    a = image(tmp_path / "2_k" / "a.png")
    a.with_suffix(".caption").write_text("old", encoding="utf-8")
    b = image(tmp_path / "2_k" / "b.png")
    caption_dataset(tmp_path, Wd14Tagger(tiny_wd14, "cpu"), mode="append")
    assert caption_of(a, ".caption").startswith("k, old, hatsune miku")
    assert caption_of(b, ".caption").startswith("k, hatsune miku") and not b.with_suffix(".txt").exists()


def test_a_failure_while_writing_leaves_the_old_caption_whole(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_text("the old caption\n", encoding="utf-8")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write.write_atomic(path, "the new caption " * 100)
    assert path.read_text(encoding="utf-8") == "the old caption\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temporary file left behind


def test_a_caption_that_is_not_utf8_is_skipped_and_left_byte_for_byte(tmp_path, tiny_wd14):
    img = image(tmp_path / "10_demo" / "a.png")
    latin1 = "café, crème".encode("latin-1")
    img.with_suffix(".txt").write_bytes(latin1)
    events = []
    summary = caption_dataset(tmp_path / "10_demo", Wd14Tagger(tiny_wd14, "cpu"), mode="append", emit=events.append)
    assert img.with_suffix(".txt").read_bytes() == latin1
    assert summary["skipped"] == 1 and "not UTF-8" in events[1]["reason"] and events[1]["event"] == "skipped"


def test_a_new_caption_file_gets_the_usual_permissions_and_an_old_one_keeps_its_own(tmp_path):
    old = tmp_path / "old.txt"
    old.write_text("x", encoding="utf-8")
    os.chmod(old, 0o640)
    write.write_atomic(old, "y")
    write.write_atomic(tmp_path / "new.txt", "z")
    mask = os.umask(0)
    os.umask(mask)
    assert (old.stat().st_mode & 0o777, (tmp_path / "new.txt").stat().st_mode & 0o777) == (0o640, 0o666 & ~mask)


def test_the_command_reports_json_lines_skips_a_broken_image_and_counts_tags(tmp_path, tiny_wd14):
    image(tmp_path / "ds" / "10_demo" / "a.png", RED)
    (tmp_path / "ds" / "10_demo" / "broken.png").write_bytes(b"not a png")
    image(tmp_path / "ds" / "10_demo" / "c.png", BLUE)
    (tmp_path / "ds" / "10_demo" / "c.txt").write_text("handwritten", encoding="utf-8")
    code, events, err = run_cli("--dataset", str(tmp_path / "ds"), "--with", "wd14", "--model-dir", str(tiny_wd14),
                                "--threshold", "0.6", "--exclude", "long hair,1girl", "--trigger", "sks")
    assert code == 0, err
    assert events[0] == {"event": "start", "total": 3, "captioner": "wd14", "device": "cpu"}
    by_kind = {e["image"]: e for e in events[1:-1]}
    broken = by_kind["10_demo/broken.png"]
    assert broken["event"] == "skipped" and "cannot be read" in broken["reason"]
    a = by_kind["10_demo/a.png"]
    assert a["event"] == "image" and a["caption"] == "sks, hatsune miku, red theme" and a["written"] is True
    assert a["total"] == 3 and a["eta_s"] >= 0 and {e["done"] for e in events[1:-1]} == {1, 2, 3}
    assert by_kind["10_demo/c.png"]["caption"] == "handwritten" and by_kind["10_demo/c.png"]["written"] is False
    summary = events[-1]
    assert summary["event"] == "summary" and (summary["images"], summary["written"], summary["kept"]) == (3, 1, 1)
    assert summary["tags"] == {"sks": 1, "hatsune miku": 1, "red theme": 1, "handwritten": 1}
    assert not (tmp_path / "ds" / "10_demo" / "broken.txt").exists()


def test_the_command_says_which_model_file_is_missing_and_exits_1(tmp_path, tiny_wd14):
    image(tmp_path / "10_demo" / "a.png")
    (tmp_path / "tagger").mkdir()
    (tmp_path / "tagger" / "model.onnx").write_bytes((tiny_wd14 / "model.onnx").read_bytes())
    code, events, _ = run_cli("--dataset", str(tmp_path / "10_demo"), "--with", "wd14",
                              "--model-dir", str(tmp_path / "tagger"))
    assert code == 1 and events[-1]["event"] == "error"
    assert "selected_tags.csv" in events[-1]["message"] and "put the tagger's" in events[-1]["message"]
    assert not (tmp_path / "10_demo" / "a.txt").exists()

    code, events, _ = run_cli("--dataset", str(tmp_path / "nowhere"), "--with", "wd14", "--model-dir", str(tiny_wd14))
    assert code == 1 and "does not exist" in events[-1]["message"]
