"""What a training run does before its first step: seed and precision, the dataset (with class images and the
validation split), the base model loaded and placed, the latent and text caches, and the LoRA with its optimizer and
schedule. TrainerSetup is the base of train.Trainer; a family with its own loader (flux/) overrides its methods.
"""
from __future__ import annotations

import math
import random
import time
from pathlib import Path

import torch

from . import noise as noise_mod, validation
from ..data import dataset as data_mod, encode, masks
from ..model import placement
from ..model.precision import pick_precision
from .optim import build_optimizer, build_scheduler


def _trainable(modules: dict[str, torch.nn.Module]) -> dict[str, torch.nn.Parameter]:
    return {f"{name}.{n}": p for name, m in modules.items() for n, p in m.named_parameters() if p.requires_grad}


class TrainerSetup:
    """The base of train.Trainer: setup() and the steps it takes, each a method a family may override."""

    def setup(self) -> None:
        cfg, paths = self.cfg, self.paths
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.autocast_dtype = pick_precision(cfg.mixed_precision, self.device, self.log, self.cpu_autocast)
        self.data = data_mod.build(paths.dataset, cfg, [])  # fail fast on the dataset, before the model loads
        t0 = time.time()
        with self.clock.phase("load"):
            self.components = self.load_components()
        c = self.components
        self.log(f"loaded {c.family} model {c.model_name} in {time.time() - t0:.1f}s")
        noise_mod.configure(self)
        self.place_models()
        reg_dirs = list(paths.reg)
        if cfg.reg_data_dir and Path(cfg.reg_data_dir).is_dir():
            reg_dirs.append(Path(cfg.reg_data_dir))
        elif cfg.reg_data_dir:
            self.log(f"note: reg_data_dir {cfg.reg_data_dir} is not on this machine; send class images as the job's "
                     "reg channel (class images are generated only with num_class_images and class_prompt)")
        class_prompt = cfg.class_prompt
        if cfg.prior_preservation or paths.reg:
            from .prior import ensure_class_images
            with self.clock.phase("class images"):
                gen_dir = ensure_class_images(self, reg_dirs, class_prompt or self._layout_class_prompt())
            if gen_dir is not None:
                reg_dirs.append(gen_dir)
        if reg_dirs:
            self.data = data_mod.build(paths.dataset, cfg, reg_dirs, class_prompt)
        self.data, self.held_out = validation.split(self.data, cfg)
        self.validator = validation.Validator(self.held_out, cfg)
        if self.held_out:
            self.log(f"validation: {len(self.held_out)} images held out (validation_split = {cfg.validation_split:g}),"
                     f" scored at timesteps {self.validator.timesteps}")
        masks.check(self.data.examples + self.held_out, cfg)
        self.masks = masks.MaskCache(cfg) if masks.enabled(cfg) else None
        self.log(f"dataset: {len(self.data.examples)} images x repeats = {sum(self.data.repeats)} per epoch, "
                 f"{len(self.data.reg_examples)} class images, buckets {dict(sorted(self.data.buckets.items()))}")
        with self.clock.phase("cache"):
            self._setup_caches()
        with self.clock.phase("setup"):
            self._setup_lora()

    def load_components(self):
        """The base model's parts (families with their own loader override this): straight into the compute dtype
        on the device; the VAE stays fp32 (exact latents, no fp16 overflow)."""
        from ..model.load import load_components
        return load_components(self.paths.model, self.cfg.family, self.paths.vae,
                               dtype=self.autocast_dtype or torch.float32, vae_dtype=torch.float32, device=self.device)

    def place_models(self) -> None:
        c = self.components
        for m in [c.unet, c.vae, *c.text_encoders]:
            m.to(self.device)

    def _layout_class_prompt(self) -> str:
        from ..data.layout import LayoutError, scan
        try:
            return scan(self.paths.dataset).class_prompt
        except LayoutError:
            return ""

    def _setup_caches(self) -> None:
        cfg, c = self.cfg, self.components
        all_examples = self.data.examples + self.data.reg_examples
        self.latents = None
        held_out = list(self.held_out)
        if cfg.cache_latents:
            folder = self.paths.cache / "latents" if cfg.cache_latents_to_disk else None
            self.latents = encode.LatentCache(c.vae, folder, cfg.vae_batch_size)
            t0 = time.time()
            self.latents.fill(all_examples, [False, True] if cfg.flip_aug else [False])
            self.latents.fill(held_out, [False])
            self.log(f"cached latents of {len(all_examples) + len(held_out)} images in {time.time() - t0:.1f}s")
        self.text_cache = None
        if cfg.cache_text_encoder_outputs and not cfg.train_text_encoder:
            self.text_cache = encode.TextCache()
            captions = [data_mod.process_caption(ex.caption, cfg, random.Random(0), 1) for ex in all_examples]
            captions += [ex.caption for ex in held_out]
            with self._autocast():  # the encoders are in the compute dtype: run them as the steps would
                self.text_cache.fill(c, captions, cfg.clip_skip, self.device)
        # What the steps never use now leaves the GPU until a sample needs it.
        self.placement = placement.Placement(c, self.device, placement.idle_during_steps(
            cfg, latents_cached=self.latents is not None, text_cached=self.text_cache is not None))
        self.placement.offload()

    def _setup_lora(self) -> None:
        from ..network import network_setup
        cfg, c = self.cfg, self.components
        self.log(f"network: {cfg.network.kind}, dim {cfg.network_dim} alpha {cfg.network_alpha:g}"
                 + (f", conv_dim {cfg.network.conv_dim} conv_alpha {cfg.network.conv_alpha:g}"
                    if cfg.network.conv_dim else ""))
        network_setup.build(c, cfg, self.paths.network_weights, self.log)
        modules = {"unet": c.unet}
        if cfg.train_text_encoder:
            modules.update({f"text_encoder_{i}": te for i, te in enumerate(c.text_encoders)})
        self.params = _trainable(modules)
        if self.autocast_dtype is not None:
            # Frozen base weights in the compute dtype save memory; the LoRA weights stay fp32 for the optimizer.
            for m in [c.unet, *c.text_encoders]:
                for p in m.parameters():
                    if not p.requires_grad:
                        p.data = p.data.to(self.autocast_dtype)
        for p in self.params.values():
            p.data = p.data.float()
        if cfg.gradient_checkpointing:
            c.unet.enable_gradient_checkpointing()
            if cfg.train_text_encoder:
                for te in c.text_encoders:
                    te.gradient_checkpointing_enable()
        c.unet.train()
        for te in c.text_encoders:
            te.train(cfg.train_text_encoder)
        groups = [{"params": [p for k, p in self.params.items() if k.startswith("unet.")],
                   "lr": cfg.effective_unet_lr, "name": "unet"}]
        if cfg.train_text_encoder:
            for i, lr in enumerate(cfg.text_encoder_lrs(len(c.text_encoders))):
                groups.append({"params": [p for k, p in self.params.items() if k.startswith(f"text_encoder_{i}.")],
                               "lr": lr, "name": "textencoder" if i == 0 else f"textencoder{i + 1}"})
        groups = [g for g in groups if g["params"]]
        self.optimizer = build_optimizer(cfg.optimizer_type, groups, cfg.effective_unet_lr, cfg.optimizer_args,
                                         self.device)
        self.batches_per_epoch = data_mod.batches_per_epoch(self.data, cfg.train_batch_size)
        steps_per_epoch = math.ceil(self.batches_per_epoch / cfg.gradient_accumulation_steps)
        self.total_steps = (cfg.max_train_epochs * steps_per_epoch) if cfg.max_train_epochs else cfg.max_train_steps
        self.steps_per_epoch = steps_per_epoch
        self.scheduler = build_scheduler(cfg.lr_scheduler, self.optimizer, cfg.warmup_steps(self.total_steps),
                                         self.total_steps, cfg.lr_scheduler_num_cycles, cfg.lr_scheduler_power)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.autocast_dtype == torch.float16 else None
        if self.fast:
            from ..network import fast_path
            fast_path.apply(c, self.optimizer, self.autocast_dtype, self.log)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)
