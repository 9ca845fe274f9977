"""The ss_* keys of a trained LoRA, for SD 1.5, SDXL and FLUX.1, are exactly the keys sd-scripts writes for the same
run, each in sd-scripts' form.

The table was read off sd-scripts (kohya-ss/sd-scripts, train_network.py: the `metadata` dict of
NetworkTrainer.train, its train_data_dir branch, the model-hash and network_args conditions and save_model;
flux_train_network.py: update_metadata; library/train_util.py: argument types and defaults). Types are what
`str(value)` of sd-scripts' Python value looks like: "None" where its value can be None.
"""
from __future__ import annotations

import json
import re

import pytest
from safetensors import safe_open

from .train_helpers import SMALL, failure, make_dataset, make_job, run_entrypoint
from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test

INT, FLOAT, BOOL, STR, JSON, RESO = "int", "float", "bool", "str", "json", "reso"
N = "|None"

ALWAYS = {
    "ss_session_id": INT, "ss_training_started_at": FLOAT, "ss_output_name": STR, "ss_learning_rate": FLOAT,
    "ss_text_encoder_lr": FLOAT + N, "ss_unet_lr": FLOAT + N, "ss_num_train_images": INT,
    "ss_num_validation_images": INT, "ss_num_reg_images": INT, "ss_num_batches_per_epoch": INT, "ss_num_epochs": INT,
    "ss_gradient_checkpointing": BOOL, "ss_gradient_accumulation_steps": INT, "ss_max_train_steps": INT,
    "ss_lr_warmup_steps": INT, "ss_lr_scheduler": STR, "ss_network_module": STR, "ss_network_dim": INT + N,
    "ss_network_alpha": FLOAT + N, "ss_network_dropout": FLOAT + N, "ss_mixed_precision": STR, "ss_full_fp16": BOOL,
    "ss_v2": BOOL, "ss_base_model_version": STR, "ss_clip_skip": INT + N, "ss_max_token_length": INT + N,
    "ss_cache_latents": BOOL, "ss_seed": INT + N, "ss_lowram": BOOL, "ss_noise_offset": FLOAT + N,
    "ss_multires_noise_iterations": INT + N, "ss_multires_noise_discount": FLOAT, "ss_adaptive_noise_scale": FLOAT + N,
    "ss_zero_terminal_snr": BOOL, "ss_training_comment": STR, "ss_sd_scripts_commit_hash": STR,
    "ss_optimizer": STR, "ss_max_grad_norm": FLOAT, "ss_caption_dropout_rate": FLOAT,
    "ss_caption_dropout_every_n_epochs": INT, "ss_caption_tag_dropout_rate": FLOAT, "ss_face_crop_aug_range": STR,
    "ss_prior_loss_weight": FLOAT, "ss_min_snr_gamma": FLOAT + N, "ss_scale_weight_norms": FLOAT + N,
    "ss_ip_noise_gamma": FLOAT + N, "ss_debiased_estimation": BOOL, "ss_noise_offset_random_strength": BOOL,
    "ss_ip_noise_gamma_random_strength": BOOL, "ss_loss_type": STR, "ss_huber_schedule": STR,
    "ss_huber_scale": FLOAT, "ss_huber_c": FLOAT, "ss_fp8_base": BOOL, "ss_fp8_base_unet": BOOL,
    "ss_validation_seed": INT + N, "ss_validation_split": FLOAT, "ss_max_validation_steps": INT + N,
    "ss_validate_every_n_epochs": INT + N, "ss_validate_every_n_steps": INT + N, "ss_resize_interpolation": STR,
    # the train_data_dir branch (no dataset_config)
    "ss_batch_size_per_device": INT, "ss_total_batch_size": INT, "ss_resolution": RESO, "ss_color_aug": BOOL,
    "ss_flip_aug": BOOL, "ss_random_crop": BOOL, "ss_shuffle_caption": BOOL, "ss_enable_bucket": BOOL,
    "ss_bucket_no_upscale": BOOL, "ss_min_bucket_reso": INT, "ss_max_bucket_reso": INT, "ss_keep_tokens": INT,
    "ss_dataset_dirs": JSON, "ss_reg_dataset_dirs": JSON, "ss_tag_frequency": JSON, "ss_bucket_info": JSON,
    # a base model that is a file; save_model
    "ss_sd_model_name": STR, "ss_sd_model_hash": STR, "ss_new_sd_model_hash": STR,
    "ss_training_finished_at": FLOAT, "ss_steps": INT, "ss_epoch": INT,
}
FLUX = {
    "ss_model_type": STR, "ss_apply_t5_attn_mask": BOOL, "ss_weighting_scheme": STR, "ss_logit_mean": FLOAT,
    "ss_logit_std": FLOAT, "ss_mode_scale": FLOAT, "ss_guidance_scale": FLOAT, "ss_timestep_sampling": STR,
    "ss_sigmoid_scale": FLOAT, "ss_model_prediction_type": STR, "ss_discrete_flow_shift": FLOAT,
}
NETWORK_ARGS = {"ss_network_args": JSON}  # only when network_args were given
EXPECTED = {"sd15": {**ALWAYS, **NETWORK_ARGS}, "sdxl": ALWAYS, "flux": {**ALWAYS, **FLUX}}


def _fits(value: str, kind: str) -> bool:
    kinds = kind.split("|")
    if "None" in kinds and value == "None":
        return True
    base = kinds[0]
    try:
        if base == INT:
            return str(int(value)) == value
        if base == FLOAT:
            float(value)
            return value not in ("None", "True", "False")
        if base == BOOL:
            return value in ("True", "False")
        if base == JSON:
            json.loads(value)
            return True
        if base == RESO:
            return re.fullmatch(r"\(\d+, \d+\)", value) is not None
    except ValueError:
        return False
    return base == STR


def test_the_type_check_tells_the_forms_apart():
    assert _fits("None", FLOAT + N) and not _fits("None", FLOAT) and not _fits("1.5", INT) and _fits("12", INT)
    assert _fits("(512, 512)", RESO) and not _fits("512,512", RESO) and not _fits("true", BOOL)


@pytest.mark.parametrize("family", ["sd15", "sdxl", "flux"])
def test_the_ss_keys_are_sd_scripts_keys_with_sd_scripts_types(family, tmp_path, request):
    model = request.getfixturevalue({"sd15": "tiny_sd15_path", "sdxl": "tiny_sdxl_path",
                                     "flux": "tiny_flux_path"}[family])
    extra = {"sd15": 'network_args = ["conv_dim=2"]\n', "sdxl": "", "flux": "t5xxl_max_token_length = 32\n"}[family]
    dataset = make_dataset(tmp_path / "data", [(64, 64)])
    root = make_job(tmp_path / "job", model, dataset, SMALL + "network_dim = 2\nmax_train_steps = 1\n" + extra)
    assert run_entrypoint(root) == 0, failure(root)
    with safe_open(str(root / "model" / "demo.safetensors"), "pt") as f:
        meta = f.metadata()
    keys = {k for k in meta if k.startswith("ss_")}
    want = EXPECTED[family]
    assert keys == set(want), f"missing {sorted(set(want) - keys)}; not sd-scripts' {sorted(keys - set(want))}"
    wrong = {k: meta[k] for k in keys if not _fits(meta[k], want[k])}
    assert not wrong, wrong
    assert re.fullmatch(r"[0-9a-f]{8}", meta["ss_sd_model_hash"])  # train_util.model_hash
    assert re.fullmatch(r"[0-9a-f]{64}", meta["ss_new_sd_model_hash"])  # train_util.calculate_sha256
    assert re.fullmatch(r"[0-9a-f]{64}", meta["sshs_model_hash"]) and re.fullmatch(r"[0-9a-f]{8}",
                                                                                    meta["sshs_legacy_hash"])
    assert "ss_datasets" not in meta and "ss_vae_hash" not in meta  # dataset_config / vae only
