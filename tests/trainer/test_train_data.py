"""Captions, layouts and the epoch order, as sd-scripts builds them."""
from __future__ import annotations

import json
import random

from cloudlora_backend.trainer.config import train_config as config
from cloudlora_backend.trainer.data import dataset as data
from cloudlora_backend.trainer.__main__ import prepare
from cloudlora_backend.trainer.loop.train import RunPaths, Trainer

from .train_helpers import SMALL, draw_image, make_dataset, make_job
from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test


def test_captions_come_from_txt_or_caption_files_else_the_trigger_word(tmp_path):
    folder = tmp_path / "ds" / "3_zwx"
    for name in ("a", "b", "c", "d"):
        draw_image(folder / f"{name}.png", (64, 64))
    (folder / "a.txt").write_text("zwx, red ball\n")
    (folder / "b.caption").write_text("\nzwx, blue ball")
    (folder / "c.txt").write_text("   \n")  # empty: the trigger word
    cfg = config.parse(SMALL, "sd15")
    td = data.build(tmp_path / "ds", cfg)
    assert {ex.image.stem: ex.caption for ex in td.examples} == {
        "a": "zwx, red ball", "b": "zwx, blue ball", "c": "zwx", "d": "zwx"}
    assert td.repeats == [3, 3, 3, 3] and td.images_per_epoch == 12 and td.triggers == ["zwx"]
    assert td.tag_frequency == {"3_zwx": {"zwx": 4, "red ball": 1, "blue ball": 1}}


def test_a_caption_saved_with_a_utf8_bom_starts_with_its_trigger_word(tmp_path):
    folder = tmp_path / "ds" / "3_zwx"
    draw_image(folder / "a.png", (64, 64))
    (folder / "a.txt").write_bytes("\ufeffzwx, red ball\n".encode())  # Notepad's "UTF-8 with BOM"
    td = data.build(tmp_path / "ds", config.parse(SMALL, "sd15"))
    assert [ex.caption for ex in td.examples] == ["zwx, red ball"]


def test_a_repeat_count_beyond_ten_thousand_is_a_layout_error(tmp_path):
    import pytest

    from cloudlora_backend.trainer.data import layout

    draw_image(tmp_path / "ds" / "999999999999999999999999999999_x" / "a.png", (64, 64))
    with pytest.raises(layout.LayoutError, match="more than 10000"):
        layout.scan(tmp_path / "ds")


def test_keep_tokens_stay_first_while_the_rest_shuffles_and_dropout_empties_the_caption():
    cfg = config.parse(SMALL + "shuffle_caption = true\nkeep_tokens = 1\n", "sd15")
    rng = random.Random(0)
    seen = {data.process_caption("sks, a, b, c, d", cfg, rng, 1) for _ in range(30)}
    assert len(seen) > 3 and all(c.startswith("sks, ") for c in seen)
    assert all(sorted(c.split(", ")) == ["a", "b", "c", "d", "sks"] for c in seen)
    drop = config.parse(SMALL + "caption_dropout_rate = 1.0\n", "sd15")
    assert data.process_caption("sks, a", drop, rng, 1) == ""


def test_the_epoch_order_depends_only_on_seed_and_epoch(tmp_path):
    ds = make_dataset(tmp_path / "ds", [(64, 64)] * 4)
    cfg = config.parse(SMALL + "shuffle_caption = true\nflip_aug = true\n", "sd15")
    td = data.build(ds, cfg)

    def names(epoch):
        return [(e.example.image.name, e.flip, e.caption) for b in data.epoch_batches(td, cfg, epoch, 2) for e in b]

    assert names(1) == names(1) and names(1) != names(2)
    assert len(names(1)) == 20 and data.batches_per_epoch(td, 2) == 10


def test_jumpstart_uses_the_instance_prompt_as_caption(tmp_path):
    ds = tmp_path / "js"
    draw_image(ds / "dog1.png", (64, 64))
    draw_image(ds / "dog2.png", (64, 64))
    (ds / "dataset_info.json").write_text(json.dumps({"instance_prompt": "a photo of sks dog",
                                                      "class_prompt": "a photo of a dog"}))
    td = data.build(ds, config.parse(SMALL, "sd15"))
    assert [ex.caption for ex in td.examples] == ["a photo of sks dog"] * 2


def test_the_kohya_sample_layout_brings_its_own_toml_when_the_job_has_no_config(tmp_path, tiny_sd15_path):
    ds = make_dataset(tmp_path / "sample", [(64, 64)], folder="60_dwjz")
    (ds / "kohya-sdxl-config.toml").write_text(
        '[model_arguments]\npretrained_model_name_or_path = "/opt/ml/input/data/model"\n'
        '[additional_network_arguments]\nnetwork_dim = 12\n[dataset_arguments]\n' + SMALL)
    root = make_job(tmp_path / "j", tiny_sd15_path, ds, None, extra_hp={"family": "sd15"})
    cfg, paths = prepare(root)
    assert cfg.network_dim == 12 and cfg.resolution_wh == (64, 64) and paths.output_name == "demo"
    assert 'network_dim = 12' in (root / "output" / "effective-config.toml").read_text()


def test_prior_preservation_generates_the_missing_class_images_into_the_job_cache(tmp_path, tiny_sd15_path):
    ds = make_dataset(tmp_path / "ds", [(64, 64)])
    reg = tmp_path / "reg"
    draw_image(reg / "1_dog" / "existing.png", (64, 64))
    cfg = config.parse(SMALL + 'num_class_images = 3\nclass_prompt = "a photo of a dog"\nprior_loss_weight = 0.5\n',
                       "sd15")
    paths = RunPaths(model=tiny_sd15_path, dataset=ds, model_dir=tmp_path / "m", tensorboard=tmp_path / "tb",
                     checkpoints=tmp_path / "c", cache=tmp_path / "cache", reg=[reg])
    t = Trainer(cfg, paths, log=lambda m: None)
    t.setup()
    generated = sorted(p.name for p in (tmp_path / "cache" / "class_images").glob("*.png"))
    assert generated == ["class_00000.png", "class_00001.png"]  # 1 existing + 2 generated = 3
    assert len(t.data.reg_examples) == 3
    assert {ex.caption for ex in t.data.reg_examples} == {"dog", "a photo of a dog"}
    assert not list(reg.rglob("class_*"))  # never written into the user's folders
    batch = [e for b in data.epoch_batches(t.data, cfg, 1, 1) for e in b]
    assert sum(e.example.is_reg for e in batch) == 5  # as many class images per epoch as training images
