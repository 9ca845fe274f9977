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

from . import checkpoint, noise as noise_mod, outputs, sampling, validation
from ..data import dataset as data_mod, encode
from .phases import PhaseClock
from .progress import Progress
from .setup import TrainerSetup


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


def _time_ids(entries, device) -> torch.Tensor:
    """SDXL's size conditioning: original (h, w), crop (top, left), target (h, w), as sd-scripts sets it."""
    rows = []
    for e in entries:
        w, h = e.example.size
        top, left = data_mod.crop_top_left(e.example)
        bw, bh = e.example.placement.bucket
        rows.append([h, w, top, left, bh, bw])
    return torch.tensor(rows, dtype=torch.float32, device=device)


class Trainer(TrainerSetup):
    """One run: setup() (setup.py) before the first step, then loss() per micro-batch and run() for the loop."""

    def __init__(self, cfg, paths: RunPaths, *, device: torch.device | None = None, log=None, stop_flag=None,
                 cpu_autocast: bool = False, started: float | None = None, fast: bool = True):
        """started: time.perf_counter() when the process began work (the time to first step counts from it).
        fast: the fused LoRA / compute-dtype norm path (network/fast_path.py); False runs peft's own layers."""
        self.cpu_autocast = cpu_autocast
        self.fast = fast
        self.cfg = cfg
        self.paths = paths
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.log = log or (lambda msg: print(msg, flush=True))
        self.stop_flag = stop_flag or (lambda: False)
        self.clock = PhaseClock(self.device, started)

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
        from ..model.load import build_pipeline
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
