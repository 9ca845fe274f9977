"""Resumable training state in the job's checkpoint dir (SageMaker syncs it to S3): LoRA weights, optimizer,
lr schedule, GradScaler and RNG states, written atomically so a kill mid-write never leaves a broken checkpoint."""
from __future__ import annotations

import os
import random
from pathlib import Path

import torch

STATE_FILE = "state.pt"


def save(folder: Path, *, step: int, params: dict[str, torch.Tensor], optimizer, scheduler, scaler,
         fingerprint: dict, epoch_losses: list[float], extra: dict | None = None) -> Path:
    """extra: small plain values a resumed run needs back (session id, validation history)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "fingerprint": fingerprint,
        "params": {k: v.detach().cpu() for k, v in params.items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng_torch": torch.random.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "rng_python": list(random.getstate()[1]),
        "epoch_losses": list(epoch_losses),
        "extra": dict(extra or {}),
    }
    tmp = folder / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, folder / STATE_FILE)
    return folder / STATE_FILE


def load(folder: Path) -> dict | None:
    path = folder / STATE_FILE
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def restore(state: dict, *, params: dict[str, torch.Tensor], optimizer, scheduler, scaler) -> None:
    with torch.no_grad():
        for k, v in params.items():
            v.copy_(state["params"][k].to(v.device, v.dtype))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    torch.random.set_rng_state(state["rng_torch"])
    if state.get("rng_cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    random.setstate((3, tuple(state["rng_python"]), None))
