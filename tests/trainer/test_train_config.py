"""The Kohya TOML module on its own (pure Python + tomlkit): what users see when their config is right or wrong."""
from __future__ import annotations

import pytest
import tomlkit

from cloudlora_backend.trainer.config import train_config as config
from cloudlora_backend.trainer.config.schema import BY_NAME, FAMILY_DEFAULTS


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_the_family_defaults_are_valid_commented_toml_that_parses_to_the_documented_values(family):
    text = config.default_toml(family)
    report = config.check(text, family)
    assert report.errors == [] and report.warnings == []
    assert "#" in text  # every default carries its reason
    cfg = config.parse(text, family)
    for key, value in FAMILY_DEFAULTS[family].items():
        if key == "clip_skip" and family == "sdxl":
            continue
        assert getattr(cfg, key) == value, key
    assert cfg.family == family


def test_sdxl_defaults_are_the_well_liked_preset_and_sd15_trains_its_text_encoder():
    xl = config.parse(config.default_toml("sdxl"), "sdxl")
    assert (xl.resolution_wh, xl.network_dim, xl.network_alpha, xl.network_train_unet_only) == ((1024, 1024), 32, 16, True)
    assert xl.min_snr_gamma == 5 and xl.cache_latents and xl.cache_text_encoder_outputs
    sd = config.parse(config.default_toml("sd15"), "sd15")
    assert sd.resolution_wh == (512, 512) and sd.train_text_encoder
    assert sd.optimizer_type == "AdamW"  # runs everywhere, unlike AdamW8bit


def test_an_unknown_key_is_an_error_that_names_the_nearest_known_key():
    report = config.check("learning_rat = 1e-4\nnetwork_dimm = 8\n")
    assert "unknown key 'learning_rat' (did you mean 'learning_rate'?)" in report.errors
    assert any("network_dimm" in e and "'network_dim'" in e for e in report.errors)


def test_kohya_gui_only_keys_are_a_warning_not_an_error():
    report = config.check('LoRA_type = "Standard"\nmax_resolution = "512,512"\nnetwork_dim = 8\n')
    assert report.ok
    assert any("LoRA_type" in w and "GUI" in w for w in report.warnings)


@pytest.mark.parametrize("line,words", [
    ("network_dim = \"x\"", ["network_dim", '"x"', "whole number"]),
    ("network_dim = 0", ["network_dim", "0", ">= 1"]),
    ("learning_rate = -1.0", ["learning_rate", "-1.0", "> 0"]),
    ("mixed_precision = \"fp8\"", ["mixed_precision", "fp8", "no, fp16, bf16"]),
    ("optimizer_type = \"Lion\"", ["optimizer_type", "Lion", "AdamW, AdamW8bit, Prodigy, Adafactor"]),
    ("shuffle_caption = 1", ["shuffle_caption", "true or false"]),
    ("resolution = \"513,512\"", ["resolution", "multiple of 8"]),
    ("caption_dropout_rate = 1.5", ["caption_dropout_rate", "1.5", "<= 1"]),
    ("v2 = true", ["v2", "not supported"]),
    ("network_module = \"networks.dylora\"", ["network_module", "networks.dylora", "lycoris.kohya"]),
])
def test_wrong_types_and_out_of_range_values_name_the_key_the_value_and_what_is_allowed(line, words):
    report = config.check(line + "\n")
    assert len(report.errors) == 1, report.errors
    for word in words:
        assert word in report.errors[0], (word, report.errors[0])


def test_tables_are_flattened_like_sd_scripts_and_values_keep_their_types():
    text = """
[model_arguments]
v_parameterization = false
[additional_network_arguments]
network_dim = 8
network_alpha = 4
[training_arguments]
resolution = "768,512"
max_train_epochs = 3
"""
    cfg = config.parse(text, "sd15")
    assert (cfg.network_dim, cfg.network_alpha, cfg.resolution_wh, cfg.max_train_epochs) == (8, 4.0, (768, 512), 3)


def test_a_key_set_in_two_tables_and_a_dataset_config_array_are_errors():
    report = config.check("[a]\nseed = 1\n[b]\nseed = 2\n[[datasets]]\nresolution = 512\n")
    assert any("seed is set twice" in e for e in report.errors)
    assert any("[[datasets]]" in e for e in report.errors)


def test_text_encoder_lr_takes_two_floats_for_sdxl_only():
    cfg = config.parse("text_encoder_lr = [1e-5, 2e-5]\nnetwork_train_unet_only = false\n", "sdxl")
    assert cfg.text_encoder_lrs(2) == [1e-5, 2e-5]
    assert not config.check("text_encoder_lr = [1e-5, 2e-5]\n", "sd15").ok


def test_format_validates_normalises_and_keeps_comments():
    text = '# my config\n[training_arguments]\nresolution = 512  # square\noptimizer_type = "adamw8bit"\nnetwork_dim = 8.0\n'
    out = config.format_toml(text, "sd15")
    assert "# my config" in out and "# square" in out
    doc = tomlkit.parse(out)["training_arguments"]
    assert doc["resolution"] == "512,512" and doc["optimizer_type"] == "AdamW8bit"
    assert doc["network_dim"] == 8 and isinstance(doc["network_dim"], int)
    with pytest.raises(config.ConfigError) as err:
        config.format_toml(text + "bogus = 1\nseed = -3\n")
    assert len(err.value.problems) == 2 and "bogus" in str(err.value) and "seed" in str(err.value)


def test_set_keys_edits_in_place_coerces_form_strings_and_refuses_bad_values():
    text = "# c\n[training_arguments]\nmax_train_steps = 100 # steps\n"
    out = config.set_keys(text, {"max_train_steps": "20", "flip_aug": "true", "text_encoder_lr": "1e-4,2e-5"})
    assert "# steps" in out
    cfg = config.parse(out, "sdxl")
    assert cfg.max_train_steps == 20 and cfg.flip_aug is True and cfg.text_encoder_lr == [1e-4, 2e-5]
    assert tomlkit.parse(out)["training_arguments"]["max_train_steps"] == 20
    with pytest.raises(config.ConfigError, match="network_dim"):
        config.set_keys(text, {"network_dim": "many"})


def test_a_new_resolution_takes_the_default_bucket_bounds_along_but_not_bounds_the_user_chose():
    # The user types 384 into SDXL's resolution field: the bounds came from the defaults, so they follow it.
    out = config.set_keys(config.default_toml("sdxl"), {"resolution": "384"}, "sdxl")
    doc = tomlkit.parse(out)
    assert (doc["resolution"], doc["min_bucket_reso"], doc["max_bucket_reso"]) == ("384,384", 384, 2048)
    assert config.check(out, "sdxl").ok
    # 64 on SD 1.5 with no bounds in the TOML at all: the default bound is written, so the rule holds.
    assert config.check(config.set_keys("max_train_steps = 5\n", {"resolution": "64"}, "sd15"), "sd15").ok
    # Larger than the default max: the max follows up; the min stays where it was.
    doc = tomlkit.parse(config.set_keys(config.default_toml("sd15"), {"resolution": "1536,1024"}, "sd15"))
    assert (doc["min_bucket_reso"], doc["max_bucket_reso"]) == (256, 1536)
    # A bound the user set is theirs: it stays, and the check names the conflict.
    mine = config.default_toml("sdxl").replace("min_bucket_reso = 512", "min_bucket_reso = 448")
    out = config.set_keys(mine, {"resolution": "384"}, "sdxl")
    assert tomlkit.parse(out)["min_bucket_reso"] == 448
    assert any("min_bucket_reso = 448" in e for e in config.check(out, "sdxl").errors)


def test_text_encoder_caching_is_switched_off_when_captions_change_or_encoders_train():
    cfg = config.parse("shuffle_caption = true\n", "sdxl")
    assert cfg.cache_text_encoder_outputs is False
    report = config.check("cache_text_encoder_outputs = true\nnetwork_train_unet_only = false\n", "sdxl")
    assert report.ok and any("cache_text_encoder_outputs" in w for w in report.warnings)


def test_prior_preservation_keys_are_accepted():
    cfg = config.parse('reg_data_dir = "reg"\nprior_loss_weight = 0.5\nnum_class_images = 20\n'
                       'class_prompt = "a photo of a dog"\n', "sd15")
    assert cfg.prior_preservation and cfg.num_class_images == 20 and cfg.prior_loss_weight == 0.5


def test_every_reference_key_is_known():
    keys = """pretrained_model_name_or_path vae output_name save_model_as save_precision save_every_n_epochs
    save_every_n_steps train_data_dir reg_data_dir resolution enable_bucket min_bucket_reso max_bucket_reso
    bucket_reso_steps bucket_no_upscale caption_extension shuffle_caption keep_tokens caption_dropout_rate flip_aug
    network_module network_dim network_alpha network_train_unet_only learning_rate unet_lr text_encoder_lr
    optimizer_type optimizer_args lr_scheduler lr_warmup_steps max_train_steps max_train_epochs train_batch_size
    gradient_accumulation_steps mixed_precision cache_latents cache_latents_to_disk cache_text_encoder_outputs
    gradient_checkpointing sdpa xformers min_snr_gamma noise_offset prior_loss_weight clip_skip seed logging_dir
    log_with sample_prompts sample_every_n_steps sample_every_n_epochs""".split()
    assert [k for k in keys if k not in BY_NAME] == []


def test_the_module_imports_without_torch():
    import subprocess
    import sys
    code = ("import sys; import cloudlora_backend.trainer.config.train_config as c; c.check(c.default_toml('sdxl'));"
            "assert 'torch' not in sys.modules, 'config imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_config_saved_by_the_kohya_ss_gui_checks_with_warnings_only():
    text = """
bucket_no_upscale = true
bucket_reso_steps = 64
cache_latents = true
cache_latents_to_disk = true
caption_extension = ".txt"
clip_skip = 1
dynamo_backend = "no"
enable_bucket = true
epoch = 10
gradient_accumulation_steps = 1
huber_c = 0.1
huber_schedule = "snr"
learning_rate = 0.0004
logging_dir = "C:/kohya/logs"
loss_type = "l2"
lr_scheduler = "cosine"
lr_scheduler_args = []
lr_scheduler_num_cycles = 1
lr_scheduler_power = 1
max_bucket_reso = 2048
max_data_loader_n_workers = 0
max_grad_norm = 1
max_timestep = 1000
max_token_length = 75
max_train_steps = 1600
min_bucket_reso = 256
mixed_precision = "fp16"
multires_noise_discount = 0.3
network_alpha = 1
network_args = []
network_dim = 8
network_module = "networks.lora"
noise_offset_type = "Original"
optimizer_args = []
optimizer_type = "AdamW8bit"
output_dir = "C:/kohya/outputs"
output_name = "last"
pretrained_model_name_or_path = "C:/models/v1-5.safetensors"
prior_loss_weight = 1
resolution = "512,512"
sample_sampler = "euler_a"
save_every_n_epochs = 1
save_model_as = "safetensors"
save_precision = "fp16"
text_encoder_lr = 0.0001
train_batch_size = 1
train_data_dir = "C:/kohya/img"
unet_lr = 0.0001
xformers = true
"""
    report = config.check(text, "sd15")
    assert report.errors == []
    warned = " ".join(report.warnings)
    for key in ("epoch", "noise_offset_type", "xformers", "output_dir", "logging_dir"):
        assert key in warned
    cfg = config.parse(text, "sd15")
    assert (cfg.network_alpha, cfg.max_grad_norm, cfg.optimizer_type) == (1.0, 1.0, "AdamW8bit")
