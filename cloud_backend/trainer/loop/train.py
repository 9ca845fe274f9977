"""The LoRA training run: model + data + config in, Kohya LoRA, samples, TensorBoard and checkpoints out.

Resumable to the step: the data order, caption randomness and noise are all derived from (seed, epoch, micro-batch
index), and the checkpoint holds LoRA weights, optimizer, lr schedule, GradScaler and RNG states.
"""
from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint, data as data_mod, encode, masks, noise as noise_mod, outputs, placement, sampling, validation
from .optim import build_optimizer, build_scheduler
from .phases import PhaseClock
from .precision import pick_precision  # noqa: F401 - part of this module's interface
from .progress import Progress


class Stopped(Exception):
    """SIGTERM arrived; the checkpoint was written at `step`."""

    def __init__(self, step: int):
        self.step = step
        super().__init__(f"stopped by SIGTERM at step {step}; the checkpoint is saved and the job resumes from it")


@dataclass
class RunPaths:
    model: Path  # checkpoint file or diffusers folder
    dataset: Path
    model_dir: Path  # the LoRA, sidecar, preview, samples/
    tensorboard: Path
    checkpoints: Path
    cache: Path  # latents on disk, generated class images, tokenizer files
    vae: Path | None = None
    reg: list[Path] = field(default_factory=list)
    parts: dict[str, Path] = field(default_factory=dict)  # FLUX.1's separate clip_l / t5xxl / ae files
    prompt_dirs: list[Path] = field(default_factory=list)  # where a sample_prompts file may be
    output_name: str = "lora"
    dataset_name: str = ""
    network_weights: Path | None = None  # the LoRA to continue from (network channel or network_weights)
    model_sha256: str = ""  # the base checkpoint's SHA-256 when the job knows it (ss_new_sd_model_hash)


@dataclass
class RunResult:
    lora: Path
    steps: int
    final_loss: float
    losses: list[float]
    samples: list[Path]


def _trainable(modules: dict[str, torch.nn.Module]) -> dict[str, torch.nn.Parameter]:
    return {f"{name}.{n}": p for name, m in modules.items() for n, p in m.named_parameters() if p.requires_grad}


def _time_ids(entries, device) -> torch.Tensor:
    """SDXL's size conditioning: original (h, w), crop (top, left), target (h, w), as sd-scripts sets it."""
    rows = []
    for e in entries:
        w, h = e.example.size
        top, left = data_mod.crop_top_left(e.example)
        bw, bh = e.example.placement.bucket
        rows.append([h, w, top, left, bh, bw])
    return torch.tensor(rows, dtype=torch.float32, device=device)


class Trainer:
    def __init__(self, cfg, paths: RunPaths, *, device: torch.device | None = None, log=None, stop_flag=None,
                 cpu_autocast: bool = False, started: float | None = None, fast: bool = True):
        """started: time.perf_counter() when the process began work (the time to first step counts from it).
        fast: the fused LoRA / compute-dtype norm path (fast_path.py); False runs peft's own layers."""
        self.cpu_autocast = cpu_autocast
        self.fast = fast
        self.cfg = cfg
        self.paths = paths
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.log = log or (lambda msg: print(msg, flush=True))
        self.stop_flag = stop_flag or (lambda: False)
        self.clock = PhaseClock(self.device, started)

    # --- setup
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
        from .models import load_components
        return load_components(self.paths.model, self.cfg.family, self.paths.vae,
                               dtype=self.autocast_dtype or torch.float32, vae_dtype=torch.float32, device=self.device)

    def place_models(self) -> None:
        c = self.components
        for m in [c.unet, c.vae, *c.text_encoders]:
            m.to(self.device)

    def _layout_class_prompt(self) -> str:
        from .layout import LayoutError, scan
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
        from . import network_setup
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
            from . import fast_path
            fast_path.apply(c, self.optimizer, self.autocast_dtype, self.log)

    # --- one micro-batch
    def _text(self, captions: list[str]):
        if self.text_cache is not None:
            return self.text_cache.get(captions, self.device)
        with torch.set_grad_enabled(self.cfg.train_text_encoder), self._autocast():
            return encode.encode_text(self.components, captions, self.cfg.clip_skip, self.device)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)

    def _latents(self, entries) -> torch.Tensor:
        if self.latents is not None:
            return torch.stack([self.latents.get(e.example, e.flip) for e in entries]).to(self.device)
        pixels = torch.from_numpy(np.stack([data_mod.load_pixels(e.example, e.flip) for e in entries]))
        return encode.encode_pixels(self.components.vae, pixels).to(self.device)

    def loss(self, entries, micro_index: int) -> torch.Tensor:
        """One training micro-batch: noise and timesteps drawn from (seed, micro-batch index) only."""
        cfg = self.cfg
        latents = self._latents(entries)
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed * 1_000_003 + micro_index)
        noise = torch.randn(latents.shape, generator=gen)
        if cfg.noise_offset:
            noise += cfg.noise_offset * torch.randn((latents.shape[0], latents.shape[1], 1, 1), generator=gen)
        if cfg.multires_noise_iterations:
            noise = noise_mod.pyramid_noise(noise, gen, cfg.multires_noise_iterations, cfg.multires_noise_discount)
        timesteps = torch.randint(cfg.min_timestep, cfg.max_timestep, (latents.shape[0],), generator=gen)
        return self.loss_at(entries, noise, timesteps, latents)

    def loss_at(self, entries, noise, timesteps, latents=None) -> torch.Tensor:
        """The loss of a batch at the given noise and timesteps (training and validation share it)."""
        cfg, c = self.cfg, self.components
        latents = self._latents(entries) if latents is None else latents
        noise, timesteps = noise.to(self.device), timesteps.to(self.device)
        noisy = c.noise_scheduler.add_noise(latents, noise, timesteps)
        hidden, pooled = self._text([e.caption for e in entries])
        if self.fast and self.autocast_dtype is not None:
            # Cast once here, not in each of the UNet's cross-attention k/v projections (140 in SDXL, twice with
            # checkpointing): autocast would cast it to this very dtype in every one.
            hidden = hidden.to(self.autocast_dtype)
        kwargs = {}
        if c.family == "sdxl":
            kwargs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": _time_ids(entries, self.device)}
        with self._autocast():
            pred = c.unet(noisy, timesteps, hidden, **kwargs).sample
        target = c.noise_scheduler.get_velocity(latents, noise, timesteps) if self.v_pred else noise
        loss = F.mse_loss(pred.float(), target.float(), reduction="none")
        if self.masks is not None:
            loss = loss * self.masks.batch(entries, loss.device)
        loss = loss.mean(dim=[1, 2, 3])
        weights = torch.tensor([cfg.prior_loss_weight if e.example.is_reg else 1.0 for e in entries],
                               device=loss.device)
        loss = loss * weights
        if cfg.min_snr_gamma:
            loss = loss * noise_mod.snr_weights(c.noise_scheduler, timesteps, cfg.min_snr_gamma, self.v_pred)
        return loss.mean()

    # --- the loop
    def fingerprint(self) -> dict:
        cfg = self.cfg
        return {"family": self.components.family, "network_dim": cfg.network_dim, "total_steps": self.total_steps,
                "train_text_encoder": cfg.train_text_encoder, "optimizer": cfg.optimizer_type,
                "batch": cfg.train_batch_size, "accum": cfg.gradient_accumulation_steps,
                "network": [cfg.network.kind, cfg.network.conv_dim, len(self.params)]}

    def log_phases(self) -> None:
        """The closing summary: time, peak GPU memory and peak RSS per phase; then the `phases=` JSON line."""
        for line in self.clock.summary():
            self.log(line)

    def save_checkpoint(self, step: int, epoch_losses) -> None:
        with self.clock.phase("save"):
            self._save_checkpoint(step, epoch_losses)

    def _save_checkpoint(self, step: int, epoch_losses) -> None:
        checkpoint.save(self.paths.checkpoints, step=step, params=self.params, optimizer=self.optimizer,
                        scheduler=self.scheduler, scaler=self.scaler, fingerprint=self.fingerprint(),
                        epoch_losses=epoch_losses,
                        extra={"session_id": self.session_id, "validation": list(self.validator.history)})

    def lrs(self) -> dict[str, float]:
        out = {}
        for g in self.optimizer.param_groups:
            lr = g.get("lr") or 0.0
            if "d" in g:  # Prodigy: the effective step size is d * lr
                lr = g["d"] * lr
            out[g.get("name", "unet")] = float(lr)
        return out

    def run(self) -> RunResult:
        from .tb import Board
        cfg, paths = self.cfg, self.paths
        started = time.time()
        step, epoch_losses = 0, []
        # sd-scripts' ss_session_id: "which group of epochs the model came from"; a resumed run is the same group.
        self.session_id = random.SystemRandom().randint(0, 2**32)
        state = checkpoint.load(paths.checkpoints)
        if state is not None:
            if state["fingerprint"] != self.fingerprint():
                self.log("note: the checkpoint was made with other settings; starting from step 0")
            else:
                checkpoint.restore(state, params=self.params, optimizer=self.optimizer, scheduler=self.scheduler,
                                   scaler=self.scaler)
                step, epoch_losses = state["step"], state["epoch_losses"]
                extra = state.get("extra") or {}
                self.session_id = int(extra.get("session_id", self.session_id))
                self.validator.history = [tuple(h) for h in extra.get("validation", [])]
                self.log(f"resumed from checkpoint at step {step}")
        board = Board(paths.tensorboard)
        prompts = self.sample_prompts()
        samples: list[Path] = []
        self.last_sample_step = None
        if cfg.sample_at_first and step == 0:
            samples += self.sample(prompts, "000000", 0)
        accum = cfg.gradient_accumulation_steps
        progress = Progress(self.total_steps, step, sys.stderr.isatty())
        losses: list[float] = []
        step_times: list[float] = []  # the last steps' durations, sampling and saving excluded
        epoch_cache: dict[int, list] = {}
        while step < self.total_steps:
            # As sd-scripts: every epoch has steps_per_epoch optimizer steps; the last one takes what is left.
            epoch, k = divmod(step, self.steps_per_epoch)
            first = k * accum
            micros = range(first, min(first + accum, self.batches_per_epoch))
            t_step = time.time()
            self.clock.begin("steps")
            self.optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            if epoch not in epoch_cache:
                epoch_cache = {epoch: data_mod.epoch_batches(self.data, cfg, epoch + 1, cfg.train_batch_size)}
            for offset in micros:
                loss = self.loss(epoch_cache[epoch][offset], epoch * self.batches_per_epoch + offset) / len(micros)
                (self.scaler.scale(loss) if self.scaler else loss).backward()
                step_loss += float(loss.detach())
            if not math.isfinite(step_loss):
                raise FloatingPointError(f"the loss became {step_loss} at step {step + 1}: lower learning_rate, or "
                                         "use mixed_precision = \"bf16\" instead of fp16")
            if self.scaler:
                self.scaler.unscale_(self.optimizer)
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(list(self.params.values()), cfg.max_grad_norm)
            if self.scaler:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.scheduler.step()
            self.clock.end("steps")
            self.clock.step_done()
            step += 1
            step_times = (step_times + [time.time() - t_step])[-20:]
            losses.append(step_loss)
            epoch_losses.append(step_loss)
            lrs = self.lrs()
            rate = len(step_times) / max(sum(step_times), 1e-9)
            print(f"step={step}/{self.total_steps} loss={step_loss:.4f} lr={lrs.get('unet', 0.0):.3g} "
                  f"it/s={rate:.2f}", flush=True)
            progress.update(step, step_loss)
            board.step(step, step_loss, sum(epoch_losses) / len(epoch_losses), lrs)
            epoch_no = step // self.steps_per_epoch
            epoch_end = epoch_no if step % self.steps_per_epoch == 0 else (
                math.ceil(step / self.steps_per_epoch) if step == self.total_steps else None)
            if self.validator.due(step, epoch_end):
                with self.clock.phase("validation"):
                    validation.validate(self, board, step, epoch_end, sum(epoch_losses) / len(epoch_losses))
            if step % self.steps_per_epoch == 0:
                board.epoch(epoch_no, sum(epoch_losses) / len(epoch_losses))
                epoch_losses = []
                if cfg.save_every_n_epochs and epoch_no % cfg.save_every_n_epochs == 0 and step < self.total_steps:
                    with self.clock.phase("save"):
                        self.save_lora(paths.model_dir / f"{paths.output_name}-{epoch_no:06d}.safetensors", step,
                                       started)
                if cfg.sample_every_n_epochs and epoch_no % cfg.sample_every_n_epochs == 0:
                    samples += self.sample(prompts, f"e{epoch_no:06d}", step)
            if cfg.sample_every_n_steps and step % cfg.sample_every_n_steps == 0 and self.last_sample_step != step:
                samples += self.sample(prompts, f"{step:06d}", step)
            if cfg.save_every_n_steps and step % cfg.save_every_n_steps == 0 and step < self.total_steps:
                self.save_checkpoint(step, epoch_losses)
                board.flush()
            if self.stop_flag():
                self.save_checkpoint(step, epoch_losses)
                board.close()
                progress.close()
                self.log_phases()
                raise Stopped(step)
        progress.close()
        validation.report_best(self, step)
        with self.clock.phase("save"):
            lora = self.save_lora(paths.model_dir / f"{paths.output_name}.safetensors", step, started)
        samples += self.finish(prompts, samples, step)
        board.close()
        self.log_phases()
        return RunResult(lora, step, losses[-1] if losses else float("nan"), losses, samples)

    # --- outputs
    def save_lora(self, path: Path, step: int, started: float) -> Path:
        epoch = math.ceil(step / max(self.steps_per_epoch, 1))
        facts = outputs.training_facts(self.cfg, self.components, self.data, steps=step, epoch=epoch,
                                       started_at=started, batches_per_epoch=self.batches_per_epoch,
                                       dataset_name=self.paths.dataset_name)
        facts.update(outputs.run_facts(self, epochs=math.ceil(self.total_steps / max(self.steps_per_epoch, 1))))
        return outputs.save_lora(path, self.components, self.cfg, facts)

    def sample_prompts(self) -> list:
        """The config's sample_prompts, or else one default prompt: the trigger word plus a caption drawn from the
        dataset (prompt_lines.default_prompt), so a run without prompts still shows what it learnt."""
        prompts = sampling.read_prompts(self.cfg.sample_prompt_text, self.paths.prompt_dirs)
        # A tiny random-weight model (smoke runs, tests) draws noise however long it denoises: 2 steps, not 20.
        steps = 2 if getattr(self.components, "tiny", False) else 20
        return prompts or [sampling.default_prompt(self.data.triggers, [ex.caption for ex in self.data.examples],
                                                   self.cfg.seed, self.paths.output_name, steps)]

    def sample(self, prompts, stem: str, step: int) -> list[Path]:
        """Renders the prompts into samples/ and labels each PNG with its epoch, step, prompt and seed."""
        with self.clock.phase("samples"):
            paths = self.sample_base(prompts, self.paths.model_dir / "samples", stem, self.cfg.seed)
            sampling.label(paths, prompts, seed=self.cfg.seed, step=step, sampler=self.cfg.sample_sampler,
                           epoch=math.ceil(step / max(self.steps_per_epoch, 1)))
        self.last_sample_step = step
        return paths

    def sample_base(self, prompts, out_dir: Path, stem: str, seed: int) -> list[Path]:
        """Renders prompts with the model as it is now (base model before the LoRA is added)."""
        from .models import build_pipeline
        c = self.components
        pipe = build_pipeline(c, sampling.make_scheduler(self.cfg.sample_sampler, c.noise_scheduler))
        pipe.set_progress_bar_config(disable=True)
        placed = getattr(self, "placement", None)
        with placed.everything_on_device() if placed else contextlib.nullcontext():
            return sampling.render(pipe, prompts, out_dir, stem, self.cfg.resolution_wh, seed, self.device,
                                   self.autocast_dtype)

    def finish(self, prompts, samples: list[Path], step: int) -> list[Path]:
        """Sidecar and preview: the sample of the last step, rendered now when no sample was made at that step."""
        new = []
        if not samples or self.last_sample_step != step:
            new = self.sample(prompts[-1:], "final", step)
        last = (samples + new)[-1]
        with self.clock.phase("save"):
            self._write_preview_and_sidecar(last, step)
        return new

    def _write_preview_and_sidecar(self, last: Path, step: int) -> None:
        p = self.paths
        outputs.write_preview(p.model_dir / f"{p.output_name}.preview.png", last)
        outputs.write_sidecar(p.model_dir / f"{p.output_name}.json", family=self.components.family,
                              triggers=self.data.triggers, output_name=p.output_name,
                              model_name=self.components.model_name, dataset_name=p.dataset_name, steps=step,
                              cfg=self.cfg)
