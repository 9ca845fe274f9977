"""The training instance catalogue: what each choice is, its GPU, VRAM and an approximate price.

Prices are approximate on-demand SageMaker *training* list prices in us-east-1 (USD per hour, 2024-2025, from
public price lists; REFERENCE.md §3 confirms ml.g5.xlarge, ml.g5.2xlarge and ml.g6e.xlarge). Other regions and
spot differ: the estimate says "approximately", and the real cost is computed from the job's billable seconds.

`tflops` is the dense bf16/fp16 tensor throughput per GPU (vendor figures) used by estimate.py.
"""
from __future__ import annotations

from dataclasses import dataclass

LOCAL = "local"


@dataclass(frozen=True)
class Instance:
    name: str  # "local" or the SageMaker instance type
    label: str
    gpu: str
    gpus: int
    vram_gb: int  # per GPU
    price_per_hour: float  # USD, approximate, us-east-1 on-demand; 0 for local
    tflops: float  # dense fp16/bf16 per GPU; 0 when unknown (local)

    @property
    def is_local(self) -> bool:
        return self.name == LOCAL

    def describe(self) -> str:
        if self.is_local:
            return "Local (this machine)"
        gpus = f"{self.gpus}x " if self.gpus > 1 else ""
        return f"{self.name} · {gpus}{self.gpu} {self.vram_gb} GB · ~${self.price_per_hour:.2f}/h"


CATALOGUE: tuple[Instance, ...] = (
    Instance(LOCAL, "Local (this machine)", "your GPU", 1, 0, 0.0, 0.0),
    Instance("ml.g5.xlarge", "ml.g5.xlarge", "NVIDIA A10G", 1, 24, 1.41, 70.0),
    Instance("ml.g5.2xlarge", "ml.g5.2xlarge", "NVIDIA A10G", 1, 24, 1.52, 70.0),
    Instance("ml.g5.4xlarge", "ml.g5.4xlarge", "NVIDIA A10G", 1, 24, 2.03, 70.0),
    Instance("ml.g5.8xlarge", "ml.g5.8xlarge", "NVIDIA A10G", 1, 24, 3.06, 70.0),
    Instance("ml.g6.xlarge", "ml.g6.xlarge", "NVIDIA L4", 1, 24, 1.13, 121.0),
    Instance("ml.g6e.xlarge", "ml.g6e.xlarge", "NVIDIA L40S", 1, 48, 2.61, 362.0),
    Instance("ml.g4dn.xlarge", "ml.g4dn.xlarge", "NVIDIA T4", 1, 16, 0.74, 65.0),
    Instance("ml.p4d.24xlarge", "ml.p4d.24xlarge", "NVIDIA A100", 8, 40, 37.69, 312.0),
)

_BY_NAME = {i.name: i for i in CATALOGUE}


def names() -> list[str]:
    return [i.name for i in CATALOGUE]


def sagemaker_names() -> list[str]:
    return [i.name for i in CATALOGUE if not i.is_local]


def get(name: str) -> Instance | None:
    """The catalogue entry; None for a type we don't list (still allowed on SageMaker, priced as unknown)."""
    if name in ("", "Local (this machine)"):
        name = LOCAL
    return _BY_NAME.get(name)


def choices() -> list[tuple[str, str]]:
    """(label, value) pairs for a dropdown."""
    return [(i.describe(), i.name) for i in CATALOGUE]
