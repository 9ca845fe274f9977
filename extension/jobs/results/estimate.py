"""Steps, time and cost of a training job, before it runs.

Steps follow sd-scripts: one epoch is ceil(images x repeats / batch) / gradient accumulation optimizer steps;
max_train_epochs (when set) wins over max_train_steps (default 1600).

Time is an order-of-magnitude figure from FLOPs (REFERENCE.md §2): a LoRA training step costs about 1.75 TFLOP
per SD1.5 image at 512 px and 14.4 TFLOP per SDXL image at 1024 px (+37 % with gradient checkpointing), scaling
with the pixel count; FLUX.1's is computed from its architecture per resolution (flux.py: 158 TFLOP at 1024 px). We assume 35 % of the GPU's dense fp16 peak (instances.py), which matches commonly reported
speeds (about 1.5 it/s for SDXL batch 1 on an A10G), plus a fixed start-up: about 5 minutes on SageMaker (instance,
image pull, data download) and 1 minute locally (model load, latents). Cost is time x the approximate list price;
spot is typically 60-70 % cheaper but is billed as it happens.

Locally, once one job has finished on this machine with the same family, resolution and batch, the estimate is
calibrated instead: that job's measured seconds per step and per sample, and its fixed time (calibration.py). Until
then a known GPU is estimated from its table entry (LOCAL_GPU_TFLOPS) and the CPU from its cores.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..sagemaker_backend import instances
from .config_values import BASE_PIXELS, batch_of, flatten, parse_resolution, resolution_of

UTILISATION = 0.35
TFLOP_PER_IMAGE = {"sd15": 1.75, "sd2": 1.75, "sdxl": 14.4}
CHECKPOINTING_FACTOR = 1.37
STARTUP_S = {"sagemaker": 300.0, "local": 60.0}
# A CPU trains in fp32 at a few tens of GFLOP/s per core in practice (far below its peak: the convolutions and
# attention of a UNet step do not vectorise well). An order of magnitude, to say "hours" or "days" honestly.
CPU_TFLOPS_PER_CORE = 0.02
SPOT_DISCOUNT = 0.65  # a typical figure; the job's real billable seconds give the real saving
DEFAULT_MAX_STEPS = 1600  # sd-scripts' default
CPU_WARNING_S = 3600.0  # a CPU job estimated longer than this is said before it is created
# Dense fp16/bf16 tensor TFLOP/s of GPUs people train on locally (vendor figures), matched by name; SageMaker's
# are in instances.py. A GPU not listed gets no time until one job has calibrated it.
LOCAL_GPU_TFLOPS = (
    ("H200", 990.0), ("H100", 990.0), ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0),
    ("A10G", 70.0), ("A10", 125.0), ("T4", 65.0), ("V100", 125.0), ("RTX 6000 Ada", 365.0), ("A6000", 155.0),
    ("5090", 210.0), ("5080", 113.0), ("4090", 165.0), ("4080", 97.0), ("4070 Ti", 80.0), ("4070", 58.0),
    ("4060 Ti", 44.0), ("4060", 30.0), ("3090", 71.0), ("3080", 59.0), ("3070", 40.0), ("3060", 25.0),
    ("2080 Ti", 54.0), ("2080", 40.0), ("2070", 30.0), ("2060", 26.0),
)


@dataclass(frozen=True)
class Estimate:
    steps: int
    epochs: int  # whole epochs, the last one possibly shorter (last_epoch_steps)
    steps_per_epoch: int
    seconds: float | None  # None: unknown (local: depends on your GPU)
    cost_usd: float | None
    spot_cost_usd: float | None
    note: str
    last_epoch_steps: int = 0
    samples: int = 0  # sample renders the config asks for (calibrated estimates count their time)
    calibrated: bool = False
    warning: str = ""  # said before the job is created (a CPU job over an hour)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        shorter = f"; the last has {self.last_epoch_steps}" if self.last_epoch_steps != self.steps_per_epoch else ""
        parts = [f"{self.steps} steps ({self.epochs} epoch{'s' if self.epochs != 1 else ''} of "
                 f"{self.steps_per_epoch}{shorter})"]
        if self.seconds is not None:
            parts.append(f"~{format_duration(self.seconds)}")
        if self.cost_usd is not None:
            cost = f"~${self.cost_usd:.2f}"
            if self.spot_cost_usd is not None:
                cost += f" (spot ~${self.spot_cost_usd:.2f})"
            parts.append(cost)
        text = " · ".join(parts)
        text = f"{text}. {self.note}" if self.note else text
        return f"Warning: {self.warning} {text}" if self.warning else text


def steps(config: dict, images_per_epoch: int, family: str = "sd15") -> tuple[int, int, int]:
    """(total optimizer steps, steps per epoch, whole epochs: the last one may be shorter, as sd-scripts runs it)."""
    batch = batch_of(config, family)
    accum = max(1, int(config.get("gradient_accumulation_steps") or 1))
    per_epoch = max(1, math.ceil(math.ceil(max(1, images_per_epoch) / batch) / accum))
    epochs = config.get("max_train_epochs")
    if epochs:
        total = per_epoch * int(epochs)
        return total, per_epoch, int(epochs)
    total = int(config.get("max_train_steps") or _default(family, "max_train_steps") or DEFAULT_MAX_STEPS)
    return total, per_epoch, math.ceil(total / per_epoch)


def _default(family: str, key: str):
    from cloudlora_backend.trainer.config.schema import defaults_for

    return defaults_for(family if family in ("sd15", "sdxl", "flux") else None).get(key)


def sample_renders(config: dict, total: int, per_epoch: int, family: str = "sd15") -> int:
    """How many sample images the trainer renders (train.py): per epoch and/or every N steps, the last step's
    (a final one when no sample fell on it), the first with sample_at_first; times the prompt lines."""
    def value(k):
        return config[k] if k in config else _default(family, k)

    every_steps = int(value("sample_every_n_steps") or 0)
    every_epochs = int(value("sample_every_n_epochs") or 0)
    if every_steps and "sample_every_n_epochs" not in config:
        every_epochs = 0  # as the config parser: every N steps alone replaces the per-epoch default
    at = set()
    if every_epochs:
        at |= {e * per_epoch for e in range(1, total // per_epoch + 1) if e % every_epochs == 0}
    if every_steps:
        at |= set(range(every_steps, total + 1, every_steps))
    at.add(total)
    prompts = str(value("sample_prompts") or "")
    lines = [ln for ln in prompts.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    per_render = 1 if "\n" not in prompts and prompts.strip().lower().endswith((".txt", ".prompt", ".prompts")) \
        else max(1, len(lines))
    return (len(at) + (1 if value("sample_at_first") else 0)) * per_render


def _train_tflop(config: dict, family: str, total: int) -> float:
    w, h = parse_resolution(config.get("resolution"), family)
    scale = (w * h) / BASE_PIXELS.get(family, 512 * 512)
    per_image = TFLOP_PER_IMAGE.get(family, 1.75) * scale
    if family == "flux":  # attention grows with the square of the tokens: computed per resolution (flux.py)
        from .. import flux

        per_image = flux.step_tflop(w, h, int(config.get("t5xxl_max_token_length") or 512))
    if config.get("gradient_checkpointing"):
        per_image *= CHECKPOINTING_FACTOR
    batch = batch_of(config, family)
    accum = max(1, int(config.get("gradient_accumulation_steps") or 1))
    return total * batch * accum * per_image


def _gpu_tflops(gpu: str) -> float:
    name = gpu.upper()
    return next((t for n, t in LOCAL_GPU_TFLOPS if n.upper() in name), 0.0)


def _local(total: int, epochs: int, per_epoch: int, config: dict, family: str, gpu: str | None,
           cores: int) -> Estimate:
    from . import calibration

    last = total - (epochs - 1) * per_epoch
    renders = sample_renders(config, total, per_epoch, family)
    w, h = resolution_of(config, family)
    device = "cpu" if gpu == "" else "gpu"
    speed = calibration.lookup(calibration.key(device, family, w, h, batch_of(config, family)))
    seconds, note, calibrated = None, "", False
    if speed is not None:
        seconds = speed.overhead_s + total * speed.s_per_step + renders * speed.s_per_sample
        calibrated = True
        note = (f"Local: calibrated from this machine's last {family} job at {w}x{h}, batch {batch_of(config, family)}"
                f" ({speed.it_per_s:.2f} it/s, {renders} sample{'s' if renders != 1 else ''}); no cloud cost.")
    if gpu or gpu is None:  # None: not asked (no time figure for an unknown GPU)
        on = f" on {gpu}" if gpu else ""
        tflops = _gpu_tflops(gpu or "")
        if not calibrated and tflops:
            seconds = _train_tflop(config, family, total) / (tflops * UTILISATION) + STARTUP_S["local"]
            note = (f"Local{on}: no cloud cost; the time is from the GPU's table figure until one job on these "
                    "settings has run here (later estimates use its measured speed).")
        elif not calibrated:
            note = f"Local{on}: no cloud cost; the time depends on the GPU (known after one job on these settings)."
        return Estimate(total, epochs, per_epoch, seconds, None, None, note, last, renders, calibrated)
    if not calibrated:
        seconds = _train_tflop(config, family, total) / (CPU_TFLOPS_PER_CORE * max(1, cores)) + STARTUP_S["local"]
    warning = ""
    if seconds > CPU_WARNING_S:
        warning = (f"about {format_duration(seconds)} on this machine's CPU. Lower the steps or the resolution, "
                   "or train on a GPU or SageMaker.")
    if calibrated:
        return Estimate(total, epochs, per_epoch, seconds, None, None, note, last, renders, True, warning)
    note = (f"Local: no GPU found, so this trains on the CPU ({cores} cores), hundreds of times slower than on a "
            "GPU (the time is an order of magnitude until one job on these settings has run here).")
    if family in ("sdxl", "flux"):
        label = {"sdxl": "SDXL", "flux": "FLUX.1"}[family]
        note += f" {label} on a CPU also needs tens of GB of RAM: train it on SageMaker, or on a machine with a GPU."
    else:
        note += " Fine for a tiny test; for a real LoRA use SageMaker or a machine with a GPU."
    return Estimate(total, epochs, per_epoch, seconds, None, None, note, last, renders, False, warning)


def refuse_what_the_check_refuses(config_text_or_dict, family: str) -> None:
    """An estimate of a config that could never run (max_train_steps = -5, learning_rate = nan, 1e30 steps) is no
    estimate: the config check's errors are raised, as job creation would raise them."""
    from cloudlora_backend.trainer.config import train_config as kohya_config

    from ...errors import UserError

    if isinstance(config_text_or_dict, str):
        text = config_text_or_dict
    else:
        import tomlkit

        text = tomlkit.dumps(dict(config_text_or_dict))
    report = kohya_config.check(text, family)
    if report.errors:
        raise UserError("No estimate: the config has problems: " + "; ".join(report.errors) + ".",
                        "Fix them (Format config Params / `cloudlora config check FILE` lists them all).")


def estimate(config_text_or_dict, *, family: str, images_per_epoch: int, instance_type: str,
             backend: str, spot: bool = False, local_gpu: str | None = None, cpu_cores: int = 1) -> Estimate:
    """local_gpu: the local GPU's name, "" for none (the CPU trains: the time is estimated), None for unknown.
    Raises UserError for a config the config check refuses."""
    refuse_what_the_check_refuses(config_text_or_dict, family)
    config = flatten(config_text_or_dict)
    total, per_epoch, epochs = steps(config, images_per_epoch, family)
    last = total - (epochs - 1) * per_epoch
    if backend == "local":
        return _local(total, epochs, per_epoch, config, family, local_gpu, cpu_cores)
    inst = instances.get(instance_type)
    if inst is None or inst.tflops <= 0:
        return Estimate(total, epochs, per_epoch, None, None, None,
                        f"{instance_type} is not in the catalogue: no time or price estimate.", last)
    seconds = _train_tflop(config, family, total) / (inst.tflops * inst.gpus * UTILISATION) + STARTUP_S["sagemaker"]
    cost = seconds / 3600 * inst.price_per_hour
    spot_cost = cost * (1 - SPOT_DISCOUNT) if spot else None
    return Estimate(total, epochs, per_epoch, seconds, cost, spot_cost,
                    "Approximate: list price in us-east-1; the real cost comes from the job's billable time.", last,
                    sample_renders(config, total, per_epoch, family))


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h {m:02d}m"
    if m:
        return f"{m}m {s:02d}s"
    return f"{s}s"
