"""The Kohya TOML's option table: every key sd-scripts' train_network.py / sdxl_train_network.py accepts, with types,
allowed values, per-family defaults and whether this trainer implements it. Pure data; train_config.py does the work.

Support levels:
- "yes":     implemented; the value changes training.
- "ignored": a real sd-scripts key this trainer does not implement (or decides itself, e.g. output_dir); a warning
             says so, training goes on. Only keys whose absence cannot make the LoRA wrong are here.
- "default": implemented only at its harmless default value; any other value is an error naming what is supported
             (e.g. v2 = true, network_module = "lycoris.kohya").
"""
from __future__ import annotations

from typing import Any

from . import caption_options as _caption_options
from . import flux_options as _flux_options
from .option import Option


_O = Option
OPTIONS: list[Option] = [
    # --- model and output
    _O("pretrained_model_name_or_path", "str", "", group="model_arguments",
       doc="the base checkpoint; the job's model channel replaces it"),
    _O("vae", "str", "", group="model_arguments", doc="a separate VAE; the job's vae channel replaces it"),
    _O("v2", "bool", False, "default", group="model_arguments", doc="SD 2.x is not supported"),
    _O("v_parameterization", "bool", False, group="model_arguments",
       doc="v-prediction loss; also switched on when the model's scheduler says v_prediction"),
    _O("output_name", "str", "", group="saving_arguments", doc="the LoRA's file stem (the job's LoRA name wins)"),
    _O("output_dir", "str", "", "ignored", group="saving_arguments", doc="the trainer writes to the job's model dir"),
    _O("save_model_as", "str", "safetensors", "default", choices=("safetensors",), group="saving_arguments",
       doc="A1111 and Forge load .safetensors"),
    _O("save_precision", "str", "fp16", choices=("fp16", "bf16", "float"), group="saving_arguments"),
    _O("save_every_n_epochs", "int", 0, min=0, group="saving_arguments", doc="intermediate LoRA files"),
    _O("save_every_n_steps", "int", 0, min=0, group="saving_arguments",
       doc="resumable checkpoints (and intermediate LoRA files) every N steps"),
    _O("save_last_n_epochs", "int", 0, "ignored", min=0, group="saving_arguments"),
    _O("save_last_n_steps", "int", 0, "ignored", min=0, group="saving_arguments"),
    _O("save_state", "bool", False, "ignored", group="saving_arguments",
       doc="state is always checkpointed to the job's checkpoint dir"),
    _O("save_state_on_train_end", "bool", False, "ignored", group="saving_arguments"),
    _O("resume", "str", "", "ignored", group="saving_arguments", doc="a job resumes from its checkpoint dir itself"),
    _O("no_metadata", "bool", False, "default", group="saving_arguments",
       doc="the metadata tells A1111 the SD version; it is always written"),
    _O("training_comment", "str", "", group="saving_arguments"),
    _O("metadata_title", "str", "", group="saving_arguments"),
    _O("metadata_author", "str", "", group="saving_arguments"),
    _O("metadata_description", "str", "", group="saving_arguments"),
    _O("metadata_license", "str", "", group="saving_arguments"),
    _O("metadata_tags", "str", "", group="saving_arguments"),
    # --- data
    _O("train_data_dir", "str", "", group="dataset_arguments", doc="the job's dataset channel replaces it"),
    _O("reg_data_dir", "str", "", group="dataset_arguments",
       doc="class images for prior preservation; the job's reg channel replaces it"),
    _O("dataset_config", "str", "", "default", group="dataset_arguments",
       doc="the dataset's folder layout is read instead (<repeats>_<trigger> folders)"),
    _O("in_json", "str", "", "default", group="dataset_arguments", doc="fine-tuning metadata files are not supported"),
    _O("resolution", "resolution", "512,512", group="dataset_arguments", doc='"W,H" (or one number for a square)'),
    _O("enable_bucket", "bool", True, group="dataset_arguments"),
    _O("min_bucket_reso", "int", 256, min=64, max=4096, group="dataset_arguments"),
    _O("max_bucket_reso", "int", 1024, min=64, max=8192, group="dataset_arguments"),
    _O("bucket_reso_steps", "int", 64, min=8, max=512, group="dataset_arguments"),
    _O("bucket_no_upscale", "bool", True, group="dataset_arguments"),
    _O("caption_extension", "str", ".txt", group="dataset_arguments",
       doc="the other of .txt/.caption is read too when this one is missing"),
    _O("caption_extention", "str", "", "ignored", group="dataset_arguments", doc="sd-scripts' old misspelling"),
    _O("caption_prefix", "str", "", group="dataset_arguments"),
    _O("caption_suffix", "str", "", group="dataset_arguments"),
    _O("caption_separator", "str", ",", group="dataset_arguments"),
    _O("shuffle_caption", "bool", False, group="dataset_arguments"),
    _O("keep_tokens", "int", 0, min=0, max=75, group="dataset_arguments"),
    _O("keep_tokens_separator", "str", "", "ignored", group="dataset_arguments"),
    _O("caption_dropout_rate", "float", 0.0, min=0.0, max=1.0, group="dataset_arguments"),
    _O("caption_dropout_every_n_epochs", "int", 0, min=0, group="dataset_arguments"),
    _O("caption_tag_dropout_rate", "float", 0.0, min=0.0, max=1.0, group="dataset_arguments"),
    _O("flip_aug", "bool", False, group="dataset_arguments"),
    _O("color_aug", "bool", False, "ignored", group="dataset_arguments"),
    _O("random_crop", "bool", False, "ignored", group="dataset_arguments"),
    _O("face_crop_aug_range", "str", "", "ignored", group="dataset_arguments"),
    _O("token_warmup_min", "int", 1, "ignored", group="dataset_arguments"),
    _O("token_warmup_step", "number", 0, "ignored", group="dataset_arguments"),
    _O("dataset_repeats", "int", 1, "ignored", group="dataset_arguments"),
    _O("debug_dataset", "bool", False, "ignored", group="dataset_arguments"),
    _O("max_token_length", "int", 75, "default", choices=(75,), group="dataset_arguments",
       doc="captions are cut at CLIP's 75 tokens"),
    _O("weighted_captions", "bool", False, "default", group="dataset_arguments"),
    _O("alpha_mask", "bool", False, group="dataset_arguments",
       doc="the images' transparency is the loss mask (transparent = ignored); switches masked loss on"),
    _O("masked_loss", "bool", False, group="dataset_arguments",
       doc="weight the loss by a mask: the image's alpha (alpha_mask) or a mask image (conditioning_data_dir)"),
    _O("conditioning_data_dir", "str", "", group="dataset_arguments",
       doc="masked_loss: the folder of mask images, inside each <repeats>_<trigger> folder (e.g. \"mask\": "
           "5_sks/mask/01.png for 5_sks/01.png); white = train, black = ignore, R channel"),
    _O("validation_split", "float", 0.0, min=0.0, max=0.9, group="dataset_arguments",
       doc="share of each folder's images held out for the validation loss (0 = none), as sd-scripts splits"),
    _O("validation_seed", "int", None, min=0, max=2**32 - 1, group="dataset_arguments",
       doc="seed of the split and of the validation noise (default: seed)"),
    _O("validate_every_n_steps", "int", 0, min=0, group="training_arguments",
       doc="also validate every N steps (0 = at the end of each epoch only)"),
    _O("validate_every_n_epochs", "int", 1, min=1, group="training_arguments"),
    _O("max_validation_steps", "int", 0, min=0, group="training_arguments",
       doc="validation batches per run (0 = all held-out images)"),
    _O("prior_loss_weight", "float", 1.0, min=0.0, max=100.0, group="dataset_arguments"),
    # DreamBooth prior preservation: not sd-scripts keys, the DreamBooth recipe's (diffusers' script names).
    _O("class_prompt", "str", "", group="dataset_arguments",
       doc='prompt for generated class images, e.g. "a photo of a dog"'),
    _O("num_class_images", "int", 0, min=0, max=10000, group="dataset_arguments",
       doc="with reg_data_dir or class_prompt: generate class images until there are this many"),
    # --- network
    _O("network_module", "str", "networks.lora", choices=("networks.lora", "lycoris.kohya", "networks.lora_flux"),
       group="additional_network_arguments",
       doc="networks.lora (LoRA; LoCon with conv_dim in network_args), lycoris.kohya (algo=lora/locon, DoRA), or "
           "networks.lora_flux for FLUX.1"),
    _O("network_dim", "int", 16, min=1, max=1024, group="additional_network_arguments"),
    _O("network_alpha", "float", 1.0, min=0.0, max=1024.0, min_exclusive=True, group="additional_network_arguments"),
    _O("network_train_unet_only", "bool", False, group="additional_network_arguments"),
    _O("network_train_text_encoder_only", "bool", False, "default", group="additional_network_arguments"),
    _O("network_weights", "str", "", group="additional_network_arguments",
       doc="continue from this LoRA's weights (a file in the job's network channel, or a path on the machine)"),
    _O("network_dropout", "float", 0.0, "default", group="additional_network_arguments"),
    _O("network_args", "strs", [], group="additional_network_arguments",
       doc='e.g. ["conv_dim=8", "conv_alpha=4"] (LoCon); with lycoris.kohya also "dora_wd=True" (DoRA)'),
    _O("dim_from_weights", "bool", False, group="additional_network_arguments",
       doc="with network_weights: take the modules, ranks and alphas from that file"),
    _O("scale_weight_norms", "float", 0.0, "default", group="additional_network_arguments"),
    _O("base_weights", "strs", [], "default", group="additional_network_arguments"),
    _O("unet_lr", "float", 0.0, min=0.0, max=1.0, group="additional_network_arguments",
       doc="0 = learning_rate"),
    _O("text_encoder_lr", "floats", 0.0, min=0.0, max=1.0, group="additional_network_arguments",
       doc="one float, or two for SDXL's two encoders; 0 = learning_rate"),
    # --- optimisation
    _O("optimizer_type", "str", "AdamW", choices=("AdamW", "AdamW8bit", "Prodigy", "Adafactor"),
       group="optimizer_arguments"),
    _O("use_8bit_adam", "bool", False, group="optimizer_arguments", doc="old spelling of optimizer_type = AdamW8bit"),
    _O("optimizer_args", "strs", [], group="optimizer_arguments", doc='e.g. ["weight_decay=0.01", "betas=0.9,0.99"]'),
    _O("learning_rate", "float", 1e-4, min=0.0, max=10.0, min_exclusive=True, group="optimizer_arguments"),
    _O("max_grad_norm", "float", 1.0, min=0.0, group="optimizer_arguments", doc="0 = no clipping"),
    _O("lr_scheduler", "str", "cosine",
       choices=("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                "adafactor"), group="optimizer_arguments"),
    _O("lr_warmup_steps", "number", 0, min=0, group="optimizer_arguments",
       doc="steps, or a float below 1 = that fraction of the training steps"),
    _O("lr_scheduler_num_cycles", "int", 1, min=1, group="optimizer_arguments"),
    _O("lr_scheduler_power", "float", 1.0, min=0.0, group="optimizer_arguments"),
    _O("lr_scheduler_type", "str", "", "default", group="optimizer_arguments"),
    _O("lr_scheduler_args", "strs", [], "default", group="optimizer_arguments"),
    _O("max_train_steps", "int", 1000, min=1, max=10_000_000, group="training_arguments"),
    _O("max_train_epochs", "int", 0, min=0, max=100_000, group="training_arguments",
       doc="when set, wins over max_train_steps (as in sd-scripts)"),
    _O("train_batch_size", "int", 1, min=1, max=256, group="training_arguments"),
    _O("gradient_accumulation_steps", "int", 1, min=1, max=1024, group="training_arguments"),
    # --- precision and memory
    _O("mixed_precision", "str", "bf16", choices=("no", "fp16", "bf16"), group="training_arguments",
       doc="bf16 falls back to fp16 on GPUs without bf16, and to fp32 on CPU (a note is printed)"),
    _O("full_fp16", "bool", False, "default", group="training_arguments", doc="LoRA weights stay fp32"),
    _O("full_bf16", "bool", False, "default", group="training_arguments", doc="LoRA weights stay fp32"),
    _O("fp8_base", "bool", False, group="training_arguments",
       doc="FLUX.1 only: the frozen transformer stored in fp8 (float8_e4m3fn), computed in bf16"),
    _O("no_half_vae", "bool", False, "ignored", group="training_arguments", doc="the VAE always runs in fp32"),
    _O("cache_latents", "bool", True, group="training_arguments"),
    _O("cache_latents_to_disk", "bool", False, group="training_arguments",
       doc="a cache folder in the job (never in the dataset)"),
    _O("vae_batch_size", "int", 1, min=1, max=64, group="training_arguments"),
    _O("cache_text_encoder_outputs", "bool", False, group="training_arguments",
       doc="only when the text encoders are frozen (UNet only) and captions do not change per step"),
    _O("cache_text_encoder_outputs_to_disk", "bool", False, "ignored", group="training_arguments",
       doc="text-encoder outputs are cached in memory"),
    _O("gradient_checkpointing", "bool", False, group="training_arguments"),
    _O("sdpa", "bool", True, group="training_arguments", doc="PyTorch scaled-dot-product attention (always used)"),
    _O("xformers", "bool", False, "ignored", group="training_arguments", doc="SDPA is used instead"),
    _O("mem_eff_attn", "bool", False, "ignored", group="training_arguments", doc="SDPA is used instead"),
    _O("lowram", "bool", False, "ignored", group="training_arguments"),
    _O("highvram", "bool", False, "ignored", group="training_arguments"),
    _O("torch_compile", "bool", False, "ignored", group="training_arguments"),
    _O("max_data_loader_n_workers", "int", 0, "ignored", min=0, group="training_arguments"),
    _O("persistent_data_loader_workers", "bool", False, "ignored", group="training_arguments"),
    # --- loss
    _O("min_snr_gamma", "float", 0.0, min=0.0, max=100.0, group="training_arguments", doc="0 = off; 5 is common"),
    _O("noise_offset", "float", 0.0, min=0.0, max=1.0, group="training_arguments"),
    _O("min_timestep", "int", 0, min=0, max=1000, group="training_arguments"),
    _O("max_timestep", "int", 1000, min=1, max=1000, group="training_arguments"),
    _O("loss_type", "str", "l2", "default", choices=("l2",), group="training_arguments"),
    _O("zero_terminal_snr", "bool", False, group="training_arguments",
       doc="rescale the noise schedule to zero terminal SNR (use with v_parameterization); set by the checkpoint's "
           "ztsnr key too"),
    _O("multires_noise_iterations", "int", 0, min=0, max=10, group="training_arguments",
       doc="multi-resolution (pyramid) noise levels; 6-10 is common, 0 = off"),
    _O("multires_noise_discount", "float", 0.3, min=0.0, max=1.0, group="training_arguments"),
    _O("adaptive_noise_scale", "float", 0.0, "default", group="training_arguments"),
    _O("ip_noise_gamma", "float", 0.0, "default", group="training_arguments"),
    _O("noise_offset_random_strength", "bool", False, "default", group="training_arguments"),
    _O("scale_v_pred_loss_like_noise_pred", "bool", False, "default", group="training_arguments"),
    _O("v_pred_like_loss", "float", 0.0, "default", group="training_arguments"),
    _O("debiased_estimation_loss", "bool", False, "default", group="training_arguments"),
    # --- run
    _O("clip_skip", "int", 1, min=1, max=12, group="training_arguments",
       doc="SD1.5 only (2 for anime models); SDXL always uses the penultimate layer"),
    _O("seed", "int", 42, min=0, max=2**32 - 1, group="training_arguments"),
    _O("logging_dir", "str", "", "ignored", group="training_arguments",
       doc="TensorBoard goes to the job's output/tensorboard"),
    _O("log_with", "str", "tensorboard", choices=("tensorboard", "all", "wandb"), group="training_arguments",
       doc="TensorBoard events are always written; wandb is not used"),
    _O("log_prefix", "str", "", "ignored", group="training_arguments"),
    _O("log_tracker_name", "str", "", "ignored", group="training_arguments"),
    _O("wandb_api_key", "str", "", "ignored", group="training_arguments", doc="never put secrets in a config"),
    # --- real sd-scripts keys this trainer does not use: harmless ones warn ("ignored"), the rest must stay default
    _O("huber_c", "float", 0.1, "ignored", doc="only for loss_type huber/smooth_l1"),
    _O("huber_schedule", "str", "snr", "ignored", doc="only for loss_type huber/smooth_l1"),
    _O("lr_decay_steps", "number", 0, "default", group="optimizer_arguments"),
    _O("lr_scheduler_timescale", "int", 0, "default", group="optimizer_arguments"),
    _O("lr_scheduler_min_lr_ratio", "float", 0.0, "default", group="optimizer_arguments"),
    _O("use_lion_optimizer", "bool", False, "default", group="optimizer_arguments"),
    _O("fused_backward_pass", "bool", False, "ignored", group="optimizer_arguments"),
    _O("dataset_class", "str", "", "default", group="dataset_arguments"),
    _O("enable_wildcard", "bool", False, "default", group="dataset_arguments"),
    _O("secondary_separator", "str", "", "ignored", group="dataset_arguments"),
    _O("cache_info", "bool", False, "ignored", group="dataset_arguments"),
    _O("skip_cache_check", "bool", False, "ignored", group="dataset_arguments"),
    _O("tokenizer_cache_dir", "str", "", "ignored", group="model_arguments"),
    _O("disable_mmap_load_safetensors", "bool", False, "ignored", group="model_arguments"),
    _O("fp8_base_unet", "bool", False, "default"),
    _O("cpu_offload_checkpointing", "bool", False, "ignored"),
    _O("ip_noise_gamma_random_strength", "bool", False, "default"),
    _O("skip_until_initial_step", "bool", False, "default"),
    _O("initial_epoch", "int", 0, "default"),
    _O("initial_step", "int", 0, "default"),
    _O("save_n_epoch_ratio", "int", 0, "ignored", group="saving_arguments"),
    _O("save_last_n_epochs_state", "int", 0, "ignored", group="saving_arguments"),
    _O("save_last_n_steps_state", "int", 0, "ignored", group="saving_arguments"),
    _O("output_config", "bool", False, "ignored"),
    _O("config_file", "str", "", "ignored"),
    _O("ddp_timeout", "int", 0, "ignored"),
    _O("ddp_gradient_as_bucket_view", "bool", False, "ignored"),
    _O("ddp_static_graph", "bool", False, "ignored"),
    _O("log_config", "bool", False, "ignored"),
    _O("log_tracker_config", "str", "", "ignored"),
    _O("wandb_run_name", "str", "", "ignored"),
    _O("huggingface_repo_id", "str", "", "ignored", group="saving_arguments"),
    _O("huggingface_repo_type", "str", "", "ignored", group="saving_arguments"),
    _O("huggingface_path_in_repo", "str", "", "ignored", group="saving_arguments"),
    _O("huggingface_token", "str", "", "ignored", group="saving_arguments", doc="never put secrets in a config"),
    _O("huggingface_repo_visibility", "str", "", "ignored", group="saving_arguments"),
    _O("save_state_to_huggingface", "bool", False, "ignored", group="saving_arguments"),
    _O("resume_from_huggingface", "bool", False, "ignored", group="saving_arguments"),
    _O("async_upload", "bool", False, "ignored", group="saving_arguments"),
    _O("sample_prompts", "text", "", group="sample_prompt_arguments",
       doc="a prompts file in the config/dataset folder, or the prompt lines themselves (Kohya syntax: --n --w --h "
           "--s --l --d)"),
    _O("sample_every_n_steps", "int", 0, min=0, group="sample_prompt_arguments"),
    _O("sample_every_n_epochs", "int", 0, min=0, group="sample_prompt_arguments"),
    _O("sample_at_first", "bool", False, group="sample_prompt_arguments"),
    _O("sample_sampler", "str", "euler_a",
       choices=("ddim", "pndm", "lms", "euler", "euler_a", "heun", "dpm_2", "dpm_2_a", "dpmsolver", "dpmsolver++",
                "dpmsingle", "k_lms", "k_euler", "k_euler_a", "k_dpm_2", "k_dpm_2_a"),
       group="sample_prompt_arguments"),
]

# FLUX.1's own keys (flux_options.py); added here so every family reads one table.
OPTIONS += _flux_options.OPTIONS
# Auto-captioning's keys (caption_options.py), this trainer's own.
OPTIONS += _caption_options.OPTIONS
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}

# Keys only Kohya's GUI (kohya_ss) writes into its own JSON/TOML; sd-scripts never reads them. A warning, not an error.
GUI_ONLY_KEYS = {
    "LoRA_type", "LyCORIS_preset", "additional_parameters", "block_alphas", "block_dims", "block_lr_zero_threshold",
    "bypass_mode", "constrain", "conv_alpha", "conv_alphas", "conv_block_alphas", "conv_block_dims", "conv_dim",
    "conv_dims", "decompose_both", "dora_wd", "down_lr_weight", "dynamo_backend", "dynamo_mode", "dynamo_use_dynamic",
    "dynamo_use_fullgraph", "epoch", "extra_accelerate_launch_args", "factor", "gpu_ids",
    "lora_network_weights", "lr_warmup", "main_process_port", "max_resolution", "mid_lr_weight", "model_list",
    "module_dropout", "multi_gpu", "noise_offset_type", "num_cpu_threads_per_process", "num_machines",
    "num_processes", "optimizer", "rank_dropout", "rescaled", "save_as_bool", "sdxl", "sdxl_cache_text_encoder_outputs",
    "sdxl_no_half_vae", "stop_text_encoder_training", "train_norm", "train_on_input", "unit", "up_lr_weight",
    "use_cp", "use_scalar", "use_tucker", "use_wandb", "vae_dir", "save_every_n_steps_state",
    "caption_metadata_filename", "latent_metadata_filename",
}

# Per-family defaults that train well; every choice is explained in the TOML that default_toml() writes.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "sd15": {
        "resolution": "512,512",
        "network_dim": 16, "network_alpha": 8.0,
        "learning_rate": 1e-4, "unet_lr": 1e-4, "text_encoder_lr": 5e-5,
        "network_train_unet_only": False,
        "optimizer_type": "AdamW", "lr_scheduler": "cosine", "lr_warmup_steps": 0.05,
        "max_train_steps": 1000, "train_batch_size": 2,
        "mixed_precision": "bf16", "cache_latents": True, "cache_text_encoder_outputs": False,
        "gradient_checkpointing": False,
        "min_snr_gamma": 5.0, "noise_offset": 0.0,
        "enable_bucket": True, "min_bucket_reso": 256, "max_bucket_reso": 1024, "bucket_reso_steps": 64,
        "bucket_no_upscale": True, "caption_extension": ".txt", "save_precision": "fp16", "seed": 42,
        "clip_skip": 1,
    },
    "sdxl": {
        "resolution": "1024,1024",
        "network_dim": 32, "network_alpha": 16.0,
        "learning_rate": 1e-4, "unet_lr": 1e-4, "text_encoder_lr": 0.0,
        "network_train_unet_only": True,
        "optimizer_type": "AdamW", "lr_scheduler": "cosine", "lr_warmup_steps": 0.05,
        "max_train_steps": 1000, "train_batch_size": 1,
        "mixed_precision": "bf16", "cache_latents": True, "cache_text_encoder_outputs": True,
        "gradient_checkpointing": True,
        "min_snr_gamma": 5.0, "noise_offset": 0.0357,
        "enable_bucket": True, "min_bucket_reso": 512, "max_bucket_reso": 2048, "bucket_reso_steps": 64,
        "bucket_no_upscale": True, "caption_extension": ".txt", "save_precision": "fp16", "seed": 42,
    },
}

# Why each default is what it is: printed as comments by default_toml().
WHY = {
    "resolution": {"sd15": "SD 1.5 was trained at 512 px", "sdxl": "SDXL was trained at 1024 px"},
    "network_module": {f: "LoRA; LoCon: network_args = [\"conv_dim=8\", \"conv_alpha=4\"]; DoRA: \"lycoris.kohya\" with "
                          "network_args = [\"dora_wd=True\"]" for f in ("sd15", "sdxl")},
    "network_dim": {"sd15": "16 holds a character or style in ~18 MB", "sdxl": "32: SDXL's wider layers need more rank"},
    "network_alpha": {"sd15": "alpha/dim = 0.5 keeps updates gentle with lr 1e-4",
                      "sdxl": "alpha/dim = 0.5 keeps updates gentle with lr 1e-4"},
    "text_encoder_lr": {"sd15": "half the UNet's: the text encoder overfits fast",
                        "sdxl": "0 with network_train_unet_only"},
    "network_train_unet_only": {"sd15": "SD 1.5 learns trigger words better with its text encoder trained",
                                "sdxl": "SDXL's two encoders already know the concepts; UNet only saves memory"},
    "optimizer_type": {f: "AdamW runs everywhere; AdamW8bit (CUDA + bitsandbytes) saves memory, Prodigy needs "
                          "learning_rate = 1" for f in ("sd15", "sdxl")},
    "lr_warmup_steps": {f: "a float below 1 is a fraction of the steps: 5 % warm-up" for f in ("sd15", "sdxl")},
    "train_batch_size": {"sd15": "fits 12 GB at 512 px", "sdxl": "fits a 24 GB A10G at 1024 px"},
    "mixed_precision": {f: "bf16 where the GPU has it, else fp16; fp32 on CPU" for f in ("sd15", "sdxl")},
    "cache_latents": {f: "encode each image once: the VAE then leaves the GPU" for f in ("sd15", "sdxl")},
    "cache_text_encoder_outputs": {"sd15": "the text encoder trains, so nothing to cache",
                                   "sdxl": "frozen encoders: encode each caption once (off again when captions "
                                           "shuffle or drop out)"},
    "gradient_checkpointing": {"sd15": "not needed at 512 px", "sdxl": "needed for 1024 px on 24 GB"},
    "min_snr_gamma": {f: "min-SNR weighting (Hang et al. 2023): faster, steadier convergence" for f in ("sd15", "sdxl")},
    "noise_offset": {"sd15": "0: offset noise shifts SD 1.5's colours",
                     "sdxl": "SDXL base was trained with noise offset 0.0357"},
    "max_bucket_reso": {"sd15": "aspect-ratio buckets up to 1024 px", "sdxl": "aspect-ratio buckets up to 2048 px"},
}


FAMILY_DEFAULTS["flux"] = _flux_options.DEFAULTS
# Samples are on by default: without them a run cannot be judged epoch by epoch. Without sample_prompts the prompt
# is the trigger word plus a caption of the dataset (prompt_lines.default_prompt).
for _fam in FAMILY_DEFAULTS:
    FAMILY_DEFAULTS[_fam] = {**FAMILY_DEFAULTS[_fam], "sample_every_n_epochs": 1}
    WHY.setdefault("sample_every_n_epochs", {})[_fam] = (
        "one sample per epoch; 0 = none (sample_every_n_steps = N samples every N steps)")
    WHY.setdefault("sample_prompts", {})[_fam] = (
        "empty: the trigger word plus a caption from the dataset; or prompt lines (--n --w --h --s --l --d)")
for _key, _why in _flux_options.WHY.items():
    WHY.setdefault(_key, {})["flux"] = _why


def defaults_for(family: str | None) -> dict[str, Any]:
    """Every option's value when the TOML leaves it out: the option's default, overridden by the family's."""
    values = {o.name: o.default for o in OPTIONS}
    values.update(FAMILY_DEFAULTS.get(family or "sd15", FAMILY_DEFAULTS["sd15"]))
    return values


FAMILIES = tuple(FAMILY_DEFAULTS)
