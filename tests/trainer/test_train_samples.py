"""The shipped sample dataset is what tools/make_sample_dataset.py draws: small, captioned, with the trigger word."""
from __future__ import annotations

import runpy

import numpy as np
from PIL import Image

from .train_helpers import ROOT, SAMPLE_DATASET


def test_the_sample_dataset_is_regenerated_pixel_for_pixel_by_its_script(tmp_path):
    script = runpy.run_path(str(ROOT / "tools" / "make_sample_dataset.py"))
    script["main"](tmp_path)
    shipped = sorted((SAMPLE_DATASET / "10_cldemo").iterdir())
    assert [p.name for p in shipped] == sorted(p.name for p in tmp_path.iterdir())
    images = [p for p in shipped if p.suffix == ".png"]
    assert len(images) == 6
    for p in shipped:
        if p.suffix == ".png":
            with Image.open(p) as a, Image.open(tmp_path / p.name) as b:
                assert a.size == (512, 512) and np.array_equal(np.asarray(a), np.asarray(b)), p.name
            assert p.stat().st_size < 60_000
        else:
            assert p.read_text() == (tmp_path / p.name).read_text() and p.read_text().startswith("cldemo, ")


def test_default_samples_one_per_epoch_with_the_trigger_and_a_dataset_caption_labelled_in_png_and_index(
        tmp_path, tiny_sd15_path):
    """Issue 19.3: samples are on without any sample config; each is labelled with epoch, step, prompt and seed."""
    import json

    from cloudlora_backend.trainer.config import train_config as config
    from cloudlora_backend.trainer.loop.train import RunPaths, Trainer

    from .train_helpers import SMALL, make_dataset
    from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test

    ds = make_dataset(tmp_path / "ds", [(64, 64), (64, 64)], folder="1_sks")
    (ds / "1_sks" / "01.txt").write_text("a red shape", encoding="utf-8")  # no trigger: it is prepended
    cfg = config.parse(SMALL + "max_train_steps = 4\ntrain_batch_size = 1\nnetwork_dim = 4\n", "sd15")
    assert cfg.sample_every_n_epochs == 1 and not cfg.sample_prompts
    out = tmp_path / "model"
    t = Trainer(cfg, RunPaths(model=tiny_sd15_path, dataset=ds, model_dir=out, tensorboard=tmp_path / "tb",
                              checkpoints=tmp_path / "ckpt", cache=tmp_path / "cache", output_name="lbl"),
                log=lambda m: None)
    t.setup()
    t.run()
    assert sorted(p.name for p in (out / "samples").glob("*.png")) == ["e000001_00.png", "e000002_00.png"]
    index = json.loads((out / "samples" / "index.json").read_text(encoding="utf-8"))
    assert [(e["file"], e["epoch"], e["step"]) for e in index] == [("e000001_00.png", 1, 2), ("e000002_00.png", 2, 4)]
    prompt = index[0]["prompt"]
    assert prompt in ("sks, shape 0", "sks, a red shape") and {e["prompt"] for e in index} == {prompt}
    assert {e["seed"] for e in index} == {cfg.seed} and index[0]["steps"] == 2  # a tiny model: a tiny sample
    with Image.open(out / "samples" / "e000002_00.png") as im:
        assert im.size == (64, 64)
        assert im.text["parameters"].startswith(prompt + "\nSteps: 2, Sampler: euler_a")
        assert "Seed: 42" in im.text["parameters"] and "Epoch: 2, Step: 4" in im.text["parameters"]
        assert json.loads(im.text["cloudlora"])["epoch"] == 2
    # the last epoch's sample is the preview: no extra "final" render at the same step
    assert (out / "lbl.preview.png").is_file() and not list((out / "samples").glob("final_*"))


def test_the_default_prompt_is_the_trigger_plus_a_caption_and_every_n_steps_alone_replaces_the_epoch_default():
    from cloudlora_backend.trainer.config import train_config as config
    from cloudlora_backend.trainer.config.prompt_lines import default_prompt

    assert default_prompt(["sks"], ["a red shape"], 1, "lora").prompt == "sks, a red shape"
    assert default_prompt(["sks"], ["sks, a red shape"], 1, "lora").prompt == "sks, a red shape"
    assert default_prompt([], [], 1, "mylora").prompt == "mylora"
    assert default_prompt(["sks"], ["b", "a", "c"], 5, "x").prompt == default_prompt(["sks"], ["c", "b", "a"], 5,
                                                                                      "x").prompt
    steps_only = config.parse("sample_every_n_steps = 50\n", "sdxl")
    assert (steps_only.sample_every_n_epochs, steps_only.sample_every_n_steps) == (0, 50)
    both = config.parse("sample_every_n_steps = 50\nsample_every_n_epochs = 2\n", "flux")
    assert (both.sample_every_n_epochs, both.sample_every_n_steps) == (2, 50)
    assert "sample_every_n_epochs = 1" in config.default_toml("sd15")
    assert not [w for w in config.check("sample_every_n_epochs = 1\n", "sd15").warnings if "sample" in w]
