"""Steps, time and cost of a training job, before it runs.

Steps follow sd-scripts: one epoch is ceil(images x repeats / batch) / gradient accumulation optimizer steps;
max_train_epochs (when set) wins over max_train_steps (default 1600).

Time is an order-of-magnitude figure from FLOPs (REFERENCE.md §2): a LoRA training step costs about 1.75 TFLOP
per SD1.5 image at 512 px and 14.4 TFLOP per SDXL image at 1024 px (+37 % with gradient checkpointing), scaling
with the pixel count; FLUX.1's is computed from its architecture per resolution (flux.py: 158 TFLOP at 1024 px). We assume 35 % of the GPU's dense fp16 peak (instances.py), which matches commonly reported
speeds (about 1.5 it/s for SDXL batch 1 on an A10G), plus a fixed start-up: about 5 minutes on SageMaker (instance,
image pull, data download) and 1 minute locally (model load, latents). Cost is time x the approximate list price;
spot is typically 60-70 % cheaper but is billed as it happens.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from . import instances

UTILISATION = 0.35
TFLOP_PER_IMAGE = {"sd15": 1.75, "sd2": 1.75, "sdxl": 14.4}
BASE_PIXELS = {"sd15": 512 * 512, "sd2": 768 * 768, "sdxl": 1024 * 1024, "flux": 1024 * 1024}
CHECKPOINTING_FACTOR = 1.37
STARTUP_S = {"sagemaker": 300.0, "local": 60.0}
# A CPU trains in fp32 at a few tens of GFLOP/s per core in practice (far below its peak: the convolutions and
# attention of a UNet step do not vectorise well). An order of magnitude, to say "hours" or "days" honestly.
CPU_TFLOPS_PER_CORE = 0.02
SPOT_DISCOUNT = 0.65  # a typical figure; the job's real billable seconds give the real saving
DEFAULT_MAX_STEPS = 1600  # sd-scripts' default


@dataclass(frozen=True)
class Estimate:
    steps: int
    epochs: float
    steps_per_epoch: int
    seconds: float | None  # None: unknown (local: depends on your GPU)
    cost_usd: float | None
    spot_cost_usd: float | None
    note: str

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"{self.steps} steps ({self.epochs:g} epochs of {self.steps_per_epoch})"]
        if self.seconds is not None:
            parts.append(f"~{format_duration(self.seconds)}")
        if self.cost_usd is not None:
            cost = f"~${self.cost_usd:.2f}"
            if self.spot_cost_usd is not None:
                cost += f" (spot ~${self.spot_cost_usd:.2f})"
            parts.append(cost)
        text = " · ".join(parts)
        return f"{text}. {self.note}" if self.note else text


def flatten(text_or_dict) -> dict:
    """sd-scripts flattens every table into one namespace."""
    if isinstance(text_or_dict, str):
        import tomlkit

        data = tomlkit.parse(text_or_dict).unwrap()
    else:
        data = dict(text_or_dict)
    out: dict = {}

    def walk(d):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v)
            else:
                out[k] = v

    walk(data)
    return out


def _resolution(value, family: str) -> tuple[int, int]:
    default = int(math.sqrt(BASE_PIXELS.get(family, 512 * 512)))
    if value in (None, ""):
        return default, default
    if isinstance(value, (int, float)):
        return int(value), int(value)
    if isinstance(value, (list, tuple)) and value:
        return int(value[0]), int(value[-1])
    parts = [p for p in str(value).replace("x", ",").split(",") if p.strip()]
    try:
        nums = [int(float(p)) for p in parts]
    except ValueError:
        return default, default
    return (nums[0], nums[-1]) if nums else (default, default)


def steps(config: dict, images_per_epoch: int) -> tuple[int, int, float]:
    """(total optimizer steps, steps per epoch, epochs)."""
    batch = max(1, int(config.get("train_batch_size") or 1))
    accum = max(1, int(config.get("gradient_accumulation_steps") or 1))
    per_epoch = max(1, math.ceil(math.ceil(max(1, images_per_epoch) / batch) / accum))
    epochs = config.get("max_train_epochs")
    if epochs:
        total = per_epoch * int(epochs)
        return total, per_epoch, float(epochs)
    total = int(config.get("max_train_steps") or DEFAULT_MAX_STEPS)
    return total, per_epoch, round(total / per_epoch, 2)


def _train_tflop(config: dict, family: str, total: int) -> float:
    w, h = _resolution(config.get("resolution"), family)
    scale = (w * h) / BASE_PIXELS.get(family, 512 * 512)
    per_image = TFLOP_PER_IMAGE.get(family, 1.75) * scale
    if family == "flux":  # attention grows with the square of the tokens: computed per resolution (flux.py)
        from . import flux

        per_image = flux.step_tflop(w, h, int(config.get("t5xxl_max_token_length") or 512))
    if config.get("gradient_checkpointing"):
        per_image *= CHECKPOINTING_FACTOR
    batch = max(1, int(config.get("train_batch_size") or 1))
    accum = max(1, int(config.get("gradient_accumulation_steps") or 1))
    return total * batch * accum * per_image


def _local(total: int, epochs: float, per_epoch: int, config: dict, family: str, gpu: str | None,
           cores: int) -> Estimate:
    if gpu or gpu is None:  # None: not asked (no time figure for an unknown GPU)
        on = f" on {gpu}" if gpu else ""
        return Estimate(total, epochs, per_epoch, None, None, None,
                        f"Local{on}: no cloud cost; the time depends on the GPU.")
    seconds = _train_tflop(config, family, total) / (CPU_TFLOPS_PER_CORE * max(1, cores)) + STARTUP_S["local"]
    note = (f"Local: no GPU found, so this trains on the CPU ({cores} cores), hundreds of times slower than on a "
            "GPU (the time is an order of magnitude).")
    if family in ("sdxl", "flux"):
        label = {"sdxl": "SDXL", "flux": "FLUX.1"}[family]
        note += f" {label} on a CPU also needs tens of GB of RAM: train it on SageMaker, or on a machine with a GPU."
    else:
        note += " Fine for a tiny test; for a real LoRA use SageMaker or a machine with a GPU."
    return Estimate(total, epochs, per_epoch, seconds, None, None, note)


def refuse_what_the_check_refuses(config_text_or_dict, family: str) -> None:
    """An estimate of a config that could never run (max_train_steps = -5, learning_rate = nan, 1e30 steps) is no
    estimate: the config check's errors are raised, as job creation would raise them."""
    from cloudlora_backend.trainer import config as kohya_config

    from ..errors import UserError

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
    total, per_epoch, epochs = steps(config, images_per_epoch)
    if backend == "local":
        return _local(total, epochs, per_epoch, config, family, local_gpu, cpu_cores)
    inst = instances.get(instance_type)
    if inst is None or inst.tflops <= 0:
        return Estimate(total, epochs, per_epoch, None, None, None,
                        f"{instance_type} is not in the catalogue: no time or price estimate.")
    seconds = _train_tflop(config, family, total) / (inst.tflops * inst.gpus * UTILISATION) + STARTUP_S["sagemaker"]
    cost = seconds / 3600 * inst.price_per_hour
    spot_cost = cost * (1 - SPOT_DISCOUNT) if spot else None
    return Estimate(total, epochs, per_epoch, seconds, cost, spot_cost,
                    "Approximate: list price in us-east-1; the real cost comes from the job's billable time.")


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
