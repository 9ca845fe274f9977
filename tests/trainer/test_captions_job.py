"""Auto-captioning as the training job's first phase (issue 23): with caption = "wd14" in the TOML and the tagger
in the captioner channel, the job captions a copy of the dataset, trains on those captions and brings them back
with the LoRA; the dataset channel is never written to."""
from __future__ import annotations

import json
import os

from safetensors import safe_open

from .captions_helpers import RED, image, tiny_wd14  # noqa: F401 - fixture
from .train_helpers import SMALL, failure, make_job, run_entrypoint
from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test

TOML = SMALL + ('network_dim = 4\nnetwork_alpha = 4\nmax_train_steps = 2\nsample_every_n_epochs = 0\n'
                'caption = "wd14"\ncaption_exclude = "long hair"\n')


def _dataset(root):
    image(root / "10_miku" / "a.png", RED)
    image(root / "10_miku" / "b.png")
    (root / "10_miku" / "b.txt").write_text("my own caption", encoding="utf-8")
    return root


def test_a_job_with_caption_wd14_trains_on_tag_captions_and_returns_them(tmp_path, tiny_sd15_path, tiny_wd14,
                                                                          capsys):
    dataset = _dataset(tmp_path / "dataset")
    os.chmod(dataset / "10_miku", 0o555)  # SageMaker's input channel may be read-only
    root = make_job(tmp_path / "job", tiny_sd15_path, dataset, TOML, output_name="miku",
                    extra_hp={"family": "sd15"})
    os.symlink(tiny_wd14, root / "input" / "data" / "captioner")
    try:
        assert run_entrypoint(root) == 0, failure(root)
    finally:
        os.chmod(dataset / "10_miku", 0o755)
    out = capsys.readouterr().out

    # The channel is untouched; the captions came back with the LoRA (caption_mode defaults to keep).
    assert sorted(p.name for p in (dataset / "10_miku").iterdir()) == ["a.png", "b.png", "b.txt"]
    captions = root / "model" / "captions"
    assert (captions / "10_miku" / "a.txt").read_text().strip() == "miku, hatsune miku, 1girl, red theme, ^_^"
    assert (captions / "10_miku" / "b.txt").read_text().strip() == "my own caption"
    listing = json.loads((captions / "captions.json").read_text())
    assert listing == {"captioner": "wd14", "mode": "keep", "files": ["10_miku/a.txt", "10_miku/b.txt"],
                       "written": ["10_miku/a.txt"]}

    # Training read those captions: the LoRA's tag frequencies are theirs.
    meta = safe_open(str(root / "model" / "miku.safetensors"), "pt").metadata()
    tags = json.loads(meta["ss_tag_frequency"])["10_miku"]
    assert tags["hatsune miku"] == 1 and tags["red theme"] == 1 and tags["my own caption"] == 1

    # Progress per image, and "caption" is the first phase of where the time went.
    assert "caption 1/2 10_miku/a.png: miku, hatsune miku, 1girl, red theme, ^_^" in out
    phases = json.loads(next(ln for ln in out.splitlines() if ln.startswith("phases="))[len("phases="):])
    assert next(iter(phases["seconds"])) == "caption"


def test_a_job_with_caption_set_but_no_captioner_channel_fails_in_plain_words(tmp_path, tiny_sd15_path):
    dataset = _dataset(tmp_path / "dataset")
    root = make_job(tmp_path / "job", tiny_sd15_path, dataset, TOML, output_name="miku",
                    extra_hp={"family": "sd15"})
    assert run_entrypoint(root) == 1
    reason = failure(root)
    assert 'caption = "wd14" needs the captioner channel' in reason and "model.onnx" in reason
    assert not (dataset / "10_miku" / "a.txt").exists()


def test_the_caption_keys_are_checked_like_every_other_key():
    from cloudlora_backend.trainer.config.train_config import check, parse

    report = check('caption = "blip"\ncaption_mode = "merge"\ncaption_threshold = 1.5\n')
    assert report.errors == ['caption = "blip" is not supported; allowed: "", wd14, florence2',
                             'caption_mode = "merge" is not supported; allowed: keep, append, replace',
                             "caption_threshold = 1.5 is too large: it must be <= 1"]
    assert check('caption = "florence2"\ncaption_exclude = "a,b"\n').warnings == [
        'caption_exclude applies to caption = "wd14" only; caption = "florence2" ignores it']
    assert check('caption_detail = "detailed"\n').warnings == [
        'caption_detail is used only while captioning: set caption = "wd14" or "florence2" (or remove it)']
    cfg = parse('caption = "WD14"\n')
    assert (cfg.caption, cfg.caption_mode, cfg.caption_threshold, cfg.caption_character_threshold) == (
        "wd14", "keep", 0.35, 0.85)


def test_a_resumed_job_trains_on_the_captions_of_its_first_attempt(tmp_path, tiny_wd14):
    from cloudlora_backend.trainer.captions.stage import caption_stage
    from cloudlora_backend.trainer.config.train_config import parse

    dataset = _dataset(tmp_path / "dataset")
    root = tmp_path / "job"
    (root / "input" / "data").mkdir(parents=True)
    os.symlink(tiny_wd14, root / "input" / "data" / "captioner")
    cfg = parse('caption = "wd14"\ncaption_mode = "replace"\n')
    work = caption_stage(root, cfg, dataset, log=lambda msg: None)
    first = (work / "10_miku" / "b.txt").read_text()
    assert first.startswith("miku, hatsune miku") and (dataset / "10_miku" / "b.txt").read_text() == "my own caption"

    (root / "input" / "data" / "captioner").unlink()  # not needed again: the copy is reused as it is
    lines = []
    assert caption_stage(root, cfg, dataset, log=lines.append) == work
    assert (work / "10_miku" / "b.txt").read_text() == first and "reusing" in lines[0]
