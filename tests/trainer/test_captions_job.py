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
