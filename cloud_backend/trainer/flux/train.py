"""The FLUX.1 LoRA run: the shared Trainer loop (data, optimizer, schedule, checkpoints, TensorBoard, outputs) with
Flux's loader, caches, LoRA, flow-matching loss, sampler and writer.

The objective and its settings follow sd-scripts' flux_train_network.py get_noise_pred_and_target and
library/flux_train_utils.py, with the defaults its FLUX.1 guide recommends (docs/flux_train_network.md,
"Recommended Settings": --timestep_sampling shift --discrete_flow_shift 3.1582 --model_prediction_type raw
--guidance_scale 1.0):
- noisy = (1 - sigma) * latents + sigma * noise; the target is the velocity noise - latents (rectified flow);
- sigma per image from `timestep_sampling`: uniform, sigmoid(sigmoid_scale * N(0,1)) (x-flux, ai-toolkit), "shift"
  (that sigmoid, then sigma * s / (1 + (s - 1) * sigma) with s = discrete_flow_shift), or "flux_shift" (BFL's
  resolution-dependent shift, as FLUX.1-dev samples);
- the guidance embedding gets guidance_scale (1.0: FLUX.1-dev is guidance-distilled, and sd-scripts' guide says to
  train with 1.0; ai-toolkit also feeds 1.0);
- model_prediction_type raw (the prediction is the velocity), additive or sigma_scaled.
Memory order for one 24 GB GPU: the AE and both text encoders run first (latents and T5/CLIP outputs cached), the
encoders are then released, and only then does the transformer (fp8 with fp8_base) come to the GPU; on a GPU with
room for all of them the transformer loads there directly (load.py), so host memory never holds it.
"""
from __future__ import annotations

import math
import random
import time

import torch
import torch.nn.functional as F

from ..data import dataset as data_mod, encode
from ..loop import outputs, sampling
from ..loop.optim import build_optimizer, build_scheduler
from ..loop.train import Trainer
from . import encode as flux_encode
from .model import FP8, img_ids, pack_latents, unpack_latents
from .sample import lin_function, time_shift


def sample_sigmas(cfg, batch: int, packed_hw: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    """One sigma in (0, 1) per image, by cfg.timestep_sampling (sd-scripts get_noisy_model_input_and_timesteps)."""
    how = cfg.timestep_sampling
    if how == "uniform":
        return torch.rand(batch, generator=gen)
    s = torch.sigmoid(cfg.sigmoid_scale * torch.randn(batch, generator=gen))
    if how == "shift":
        shift = cfg.discrete_flow_shift
        return (s * shift) / (1 + (shift - 1) * s)
    if how == "flux_shift":
        return time_shift(lin_function()(packed_hw[0] * packed_hw[1]), 1.0, s)
    return s  # sigmoid


def loss_weighting(scheme: str, sigmas: torch.Tensor) -> torch.Tensor:
    """SD3's loss weights for sigma_scaled predictions (sd-scripts compute_loss_weighting_for_sd3)."""
    if scheme == "sigma_sqrt":
        return sigmas.float() ** -2.0
    if scheme == "cosmap":
        return 2 / (math.pi * (1 - 2 * sigmas + 2 * sigmas ** 2))
    return torch.ones_like(sigmas)


class FluxTrainer(Trainer):
    # --- loading and placement
    def load_components(self):
        from .load import load_flux
        cfg = self.cfg
        te_dtype = self.autocast_dtype or torch.float32
        if te_dtype == torch.float16:
            te_dtype = torch.float32  # T5 overflows in fp16
        return load_flux(self.paths.model, self.paths.parts, dtype=te_dtype,
                         transformer_storage=FP8 if cfg.fp8_base else self.autocast_dtype, device=self.device,
                         transformer_device="auto")

    def place_models(self) -> None:
        """The AE and text encoders now; the transformer after the caches (see the module docstring)."""
        c = self.components
        for m in [c.vae, *c.text_encoders]:
            m.to(self.device)

    def _setup_caches(self) -> None:
        cfg, c = self.cfg, self.components
        all_examples = self.data.examples + self.data.reg_examples
        self.latents = None
        if cfg.cache_latents:
            folder = self.paths.cache / "latents" if cfg.cache_latents_to_disk else None
            self.latents = encode.LatentCache(c.vae, folder, cfg.vae_batch_size)
            t0 = time.time()
            self.latents.fill(all_examples, [False, True] if cfg.flip_aug else [False])
            self.log(f"cached latents of {len(all_examples)} images in {time.time() - t0:.1f}s")
        self.text_cache = flux_encode.TextCache(cfg.t5xxl_max_token_length, cfg.apply_t5_attn_mask)
        # Sample prompts and the preview's fallback prompt are encoded now, so the encoders can leave afterwards.
        prompts = [p.prompt for p in self.sample_prompts()]
        captions = []
        if cfg.cache_text_encoder_outputs:
            captions = [data_mod.process_caption(ex.caption, cfg, random.Random(0), 1) for ex in all_examples]
        t0 = time.time()
        self.text_cache.fill(c, captions + prompts, self.device)
        if cfg.cache_text_encoder_outputs:
            self.log(f"cached CLIP-L/T5-XXL outputs of {len(set(captions))} captions in {time.time() - t0:.1f}s; "
                     "the text encoders leave the GPU")
            c.text_encoders = [None, None]  # released: the cache holds everything training and sampling need
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    # --- LoRA
    def _setup_lora(self) -> None:
        from .lora import add_lora
        cfg, c = self.cfg, self.components
        lora_params = add_lora(c.unet, cfg.network_dim, cfg.network_alpha)
        self.params = {f"unet.{n}": p for n, p in c.unet.named_parameters() if p.requires_grad}
        assert len(self.params) == len(lora_params)
        c.unet.to(self.device)
        if cfg.gradient_checkpointing:
            c.unet.enable_gradient_checkpointing()
        c.unet.train()
        groups = [{"params": list(self.params.values()), "lr": cfg.effective_unet_lr, "name": "unet"}]
        self.optimizer = build_optimizer(cfg.optimizer_type, groups, cfg.effective_unet_lr, cfg.optimizer_args,
                                         self.device)
        self.batches_per_epoch = data_mod.batches_per_epoch(self.data, cfg.train_batch_size)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / cfg.gradient_accumulation_steps)
        self.total_steps = (cfg.max_train_epochs * self.steps_per_epoch) if cfg.max_train_epochs \
            else cfg.max_train_steps
        self.scheduler = build_scheduler(cfg.lr_scheduler, self.optimizer, cfg.warmup_steps(self.total_steps),
                                         self.total_steps, cfg.lr_scheduler_num_cycles, cfg.lr_scheduler_power)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.autocast_dtype == torch.float16 else None
        stored = {p.dtype for n, p in c.unet.named_parameters() if n.endswith("base_layer.weight")}
        self.log(f"FLUX.1 LoRA: {len(lora_params) // 2} modules, rank {cfg.network_dim}; transformer weights stored "
                 f"as {', '.join(sorted(str(d).replace('torch.', '') for d in stored))}")

    # --- one micro-batch
    def text_states(self, captions: list[str]):
        """(pooled, T5 states, T5 mask) on the device, from the cache when it has them."""
        dtype = self.autocast_dtype
        if all(c in self.text_cache for c in captions):
            return self.text_cache.get(captions, self.device, dtype)
        pooled, states, mask = flux_encode.encode_text(self.components, captions, self.cfg.t5xxl_max_token_length,
                                                       self.device, self.cfg.apply_t5_attn_mask)
        return (pooled, states, mask) if dtype is None else (pooled.to(dtype), states.to(dtype), mask)

    def loss(self, entries, micro_index: int) -> torch.Tensor:
        cfg, model = self.cfg, self.components.unet
        latents = self._latents(entries)
        b, _ch, h, w = latents.shape
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed * 1_000_003 + micro_index)
        noise = torch.randn(latents.shape, generator=gen)
        sigmas = sample_sigmas(cfg, b, (h // 2, w // 2), gen).to(self.device)
        noise = noise.to(self.device)
        s = sigmas.view(-1, 1, 1, 1)
        noisy = (1.0 - s) * latents + s * noise
        pooled, states, mask = self.text_states([e.caption for e in entries])
        guidance = torch.full((b,), float(cfg.guidance_scale), device=self.device)
        txt_ids = torch.zeros(b, states.shape[1], 3, device=self.device)
        with self._autocast():
            pred = model(pack_latents(noisy), img_ids(b, h // 2, w // 2, self.device), states, txt_ids, sigmas,
                         pooled, guidance, mask if cfg.apply_t5_attn_mask else None)
        pred = unpack_latents(pred.float(), h // 2, w // 2)
        if cfg.model_prediction_type == "additive":
            pred = pred + noisy
        elif cfg.model_prediction_type == "sigma_scaled":
            pred = pred * (-s) + noisy
        target = noise - latents
        loss = F.mse_loss(pred, target.float(), reduction="none")
        if cfg.model_prediction_type == "sigma_scaled":  # sd-scripts compute_loss_weighting_for_sd3
            loss = loss * loss_weighting(cfg.weighting_scheme, s)
        loss = loss.mean(dim=[1, 2, 3])
        weights = torch.tensor([cfg.prior_loss_weight if e.example.is_reg else 1.0 for e in entries],
                               device=loss.device)
        return (loss * weights).mean()

    # --- outputs
    def sample_base(self, prompts, out_dir, stem: str, seed: int):
        from .sample import render
        return render(self, prompts, out_dir, stem, self.cfg.resolution_wh, seed)

    def save_lora(self, path, step: int, started: float):
        from ..loop.outputs import SAVE_DTYPES
        from .lora import flux_metadata, save_flux_lora
        epoch = math.ceil(step / max(self.steps_per_epoch, 1))
        facts = outputs.training_facts(self.cfg, self.components, self.data, steps=step, epoch=epoch,
                                       started_at=started, batches_per_epoch=self.batches_per_epoch,
                                       dataset_name=self.paths.dataset_name)
        facts.pop("text_encoder_lr", None)  # the text encoders do not train
        facts.update(outputs.run_facts(self, epochs=math.ceil(self.total_steps / max(self.steps_per_epoch, 1))))
        facts.pop("v_parameterization", None)  # sd-scripts writes no prediction type for Flux
        return save_flux_lora(path, self.components, self.cfg.network_dim, self.cfg.network_alpha, facts,
                              SAVE_DTYPES[self.cfg.save_precision], flux_metadata(self.cfg))
