"""Bad configs, datasets and inputs end the job with exit 1 and a plain-words reason in output/failure."""
from __future__ import annotations

import json

import torch

from cloudlora_backend.trainer.loop import train
from cloudlora_backend.trainer.__main__ import EXIT_INPUT, EXIT_OOM, OOM_HINT

from .train_helpers import SAMPLE_DATASET, SMALL, failure, make_dataset, make_job, run_entrypoint
from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test


def test_an_unknown_config_key_fails_before_the_model_loads_naming_the_nearest_key(tmp_path, tiny_sd15_path):
    root = make_job(tmp_path / "j", tiny_sd15_path, SAMPLE_DATASET, SMALL + "learning_rat = 1e-4\n")
    assert run_entrypoint(root) == EXIT_INPUT
    assert "unknown key 'learning_rat' (did you mean 'learning_rate'?)" in failure(root)


def test_a_bad_hyperparameter_override_names_the_key_and_value(tmp_path, tiny_sd15_path):
    root = make_job(tmp_path / "j", tiny_sd15_path, SAMPLE_DATASET, SMALL, extra_hp={"max_train_steps": "lots"})
    assert run_entrypoint(root) == EXIT_INPUT
    assert 'max_train_steps = "lots" must be a whole number' in failure(root)


def test_a_dataset_without_repeats_folders_says_how_to_name_them(tmp_path, tiny_sd15_path):
    ds = make_dataset(tmp_path / "ds", [(64, 64)], folder="images")
    root = make_job(tmp_path / "j", tiny_sd15_path, ds, SMALL)
    assert run_entrypoint(root) == EXIT_INPUT
    assert "no <repeats>_<trigger> folder" in failure(root) and "20_mytrigger" in failure(root)


def test_an_unreadable_image_is_named(tmp_path, tiny_sd15_path):
    ds = make_dataset(tmp_path / "ds", [(64, 64)])
    (ds / "5_sks" / "broken.png").write_bytes(b"not a png")
    root = make_job(tmp_path / "j", tiny_sd15_path, ds, SMALL)
    assert run_entrypoint(root) == EXIT_INPUT
    assert "broken.png cannot be read" in failure(root)


def test_a_job_without_a_model_says_the_model_channel_is_missing(tmp_path, tiny_sd15_path):
    root = make_job(tmp_path / "j", tiny_sd15_path, SAMPLE_DATASET, SMALL)
    (root / "input/data/model" / tiny_sd15_path.name).unlink()
    assert run_entrypoint(root) == EXIT_INPUT
    assert "holds no .safetensors/.ckpt file" in failure(root)


def test_adamw8bit_without_cuda_says_to_use_adamw(tmp_path, tiny_sd15_path):
    root = make_job(tmp_path / "j", tiny_sd15_path, SAMPLE_DATASET, SMALL + 'optimizer_type = "AdamW8bit"\n')
    assert run_entrypoint(root) == EXIT_INPUT
    assert "needs a CUDA GPU" in failure(root) and 'Use optimizer_type = "AdamW"' in failure(root)


def test_running_out_of_gpu_memory_gives_the_hint(tmp_path, tiny_sd15_path, monkeypatch):
    def oom(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train.Trainer, "run", oom)
    root = make_job(tmp_path / "j", tiny_sd15_path, SAMPLE_DATASET, SMALL + "max_train_steps = 1\n")
    assert run_entrypoint(root) == EXIT_OOM
    text = failure(root)
    assert text.startswith(OOM_HINT) and "train_batch_size" in text and "Tried to allocate" in text


def test_hyperparameters_from_the_sagemaker_sdk_are_json_quoted_and_still_read(tmp_path, tiny_sd15_path):
    root = make_job(tmp_path / "j", tiny_sd15_path, SAMPLE_DATASET, SMALL + "learning_rat = 1\n")
    (root / "input/config/hyperparameters.json").write_text(json.dumps({"output_name": '"quoted"'}))
    from cloudlora_backend.trainer.__main__ import read_hyperparameters
    assert read_hyperparameters(root) == {"output_name": "quoted"}


def test_a_sample_prompts_file_that_is_not_in_the_job_fails_before_training(tmp_path, tiny_sd15_path):
    root = make_job(tmp_path / "j", tiny_sd15_path, SAMPLE_DATASET,
                    SMALL + 'sample_prompts = "C:/kohya/outputs/prompt.txt"\nsample_every_n_steps = 10\n')
    assert run_entrypoint(root) == EXIT_INPUT
    assert "sample_prompts file 'C:/kohya/outputs/prompt.txt' was not found" in failure(root)
    assert not (root / "checkpoints").exists()


def test_a_sample_prompts_file_in_the_config_channel_is_found(tmp_path, tiny_sd15_path):
    from cloudlora_backend.trainer.__main__ import prepare
    root = make_job(tmp_path / "j", tiny_sd15_path, SAMPLE_DATASET, SMALL + 'sample_prompts = "prompts.txt"\n')
    (root / "input/data/config/prompts.txt").write_text("# a comment\ncldemo --w 64 --h 64 --s 5 --l 6.5 --d 9\n")
    cfg, paths = prepare(root)
    from cloudlora_backend.trainer.loop.sampling import read_prompts
    [p] = read_prompts(cfg.sample_prompt_text, paths.prompt_dirs)
    assert (p.prompt, p.width, p.height, p.steps, p.cfg_scale, p.seed) == ("cldemo", 64, 64, 5, 6.5, 9)
