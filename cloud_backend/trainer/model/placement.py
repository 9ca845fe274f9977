"""Which frozen parts of the model stay on the GPU during the steps. Once the latents are cached the steps never run
the VAE, and once the text-encoder outputs are cached (encoders not trained) they never run the text encoders: those
parts wait in host memory and come back to the GPU only while samples are rendered (SDXL's text encoders are 1.6 GB
in bf16, its VAE 0.3 GB in fp32: room a 16 GB card needs at batch 1)."""
from __future__ import annotations

import contextlib

import torch

PARTS = ("vae", "text_encoders")


def idle_during_steps(cfg, *, latents_cached: bool, text_cached: bool) -> list[str]:
    """The parts the training steps do not use, given what is cached."""
    idle = []
    if latents_cached:
        idle.append("vae")
    if text_cached and not cfg.train_text_encoder:
        idle.append("text_encoders")
    return idle


class Placement:
    """Moves the idle parts between the compute device and the host. A no-op when the device is the host (CPU)."""

    def __init__(self, components, device: torch.device, idle: list[str], host: torch.device | str = "cpu"):
        unknown = set(idle) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown model parts {sorted(unknown)}; expected some of {PARTS}")
        self.components = components
        self.device = torch.device(device)
        self.host = torch.device(host)
        self.idle = list(idle)
        self.parked = False

    def _modules(self) -> list:
        c = self.components
        out = []
        if "vae" in self.idle and c.vae is not None:
            out.append(c.vae)
        if "text_encoders" in self.idle:
            out += list(c.text_encoders)
        return out

    @property
    def active(self) -> bool:
        return bool(self.idle) and self.device != self.host

    def offload(self) -> None:
        """The idle parts to the host, their GPU memory back to the allocator's pool for the steps."""
        if not self.active or self.parked:
            return
        for m in self._modules():
            m.to(self.host)
        self.parked = True
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def restore(self) -> None:
        if not self.parked:
            return
        for m in self._modules():
            m.to(self.device)
        self.parked = False

    @contextlib.contextmanager
    def everything_on_device(self):
        """For rendering samples: the whole model on the device, the idle parts parked again afterwards."""
        was_parked = self.parked
        self.restore()
        try:
            yield
        finally:
            if was_parked:
                self.offload()
