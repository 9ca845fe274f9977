"""Auto-captioning with sentences (issue 23): Florence-2 through transformers' native Florence2ForConditionalGeneration.
The model here is tiny with random weights (its sentences are nonsense), built offline with its own processor and
tokenizer; what is checked is the real path: the folder loads, each task prompt runs through generate, and the
sentence lands in the caption file after the trigger word."""
from __future__ import annotations

import pytest
from PIL import Image

from cloudlora_backend.trainer.captions.florence2 import TASKS, Florence2Captioner
from cloudlora_backend.trainer.captions.run import caption_dataset

from .captions_helpers import RED, caption_of, image, run_cli


@pytest.fixture(scope="module")
def tiny_florence2(tmp_path_factory):
    from cloudlora_backend.trainer.captions.tiny import make_tiny_florence2

    return make_tiny_florence2(tmp_path_factory.mktemp("florence2"))


def test_florence2_writes_a_sentence_after_the_trigger_word(tmp_path, tiny_florence2):
    img = image(tmp_path / "10_demo" / "a.png", RED)
    old = image(tmp_path / "10_demo" / "b.png", RED)  # the same picture: the same sentence
    old.with_suffix(".txt").write_text("demo, my words", encoding="utf-8")
    captioner = Florence2Captioner(tiny_florence2, "cpu", "short")
    captioner.max_new_tokens["short"] = 16  # random weights never end a sentence: keep the test quick

    summary = caption_dataset(tmp_path / "10_demo", captioner, mode="append")
    sentence = caption_of(img).removeprefix("demo, ")
    assert sentence.strip() and "<" not in sentence and len(sentence.split()) <= 16  # no special tokens
    assert caption_of(old) == f"demo, my words, {sentence}"
    assert summary["written"] == 2


def test_short_and_detailed_ask_florence2_different_tasks(tiny_florence2, tmp_path, monkeypatch):
    asked = []
    captioner = Florence2Captioner(tiny_florence2, "cpu", "detailed")
    captioner.max_new_tokens = {"short": 4, "detailed": 4}
    real = captioner.processor.__class__.__call__
    monkeypatch.setattr(captioner.processor.__class__, "__call__",
                        lambda self, *a, **k: asked.append(k["text"]) or real(self, *a, **k))
    picture = Image.open(image(tmp_path / "a.png"))
    captioner.caption(picture)
    captioner.detail = "short"
    captioner.caption(picture)
    assert asked == [TASKS["detailed"], TASKS["short"]] == ["<DETAILED_CAPTION>", "<CAPTION>"]


def test_the_command_runs_florence2_and_names_a_folder_that_is_not_florence2(tmp_path, tiny_florence2, capfd):
    image(tmp_path / "ds" / "a.png")
    code, events, err = run_cli("--dataset", str(tmp_path / "ds"), "--with", "florence2", "--model-dir",
                                str(tiny_florence2), "--detail", "short", "--trigger", "sks", "--device", "cpu")
    assert code == 0, err
    assert [e["event"] for e in events] == ["start", "image", "summary"]
    assert events[0]["captioner"] == "florence2" and events[1]["caption"].startswith("sks, ")

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "blip"}')
    code, events, _ = run_cli("--dataset", str(tmp_path / "ds"), "--with", "florence2", "--model-dir",
                              str(tmp_path / "other"))
    assert code == 1 and "not Florence-2" in events[-1]["message"]
