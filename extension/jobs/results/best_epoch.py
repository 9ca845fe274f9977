"""Which epoch to keep: the epoch with the lowest validation loss (from the trainer's TensorBoard events, so it works
live for SageMaker too) and its LoRA file, as the job summary, the tab and `cloudlora job show` name it."""
from __future__ import annotations

from pathlib import Path

from ...settings import data_dir
from . import events
from ..local_backend import local
from ..records import JobRecord


def of_job(rec: JobRecord, lora_files: list[Path]) -> dict | None:
    """The epoch with the lowest validation loss and its LoRA file (None without a validation split)."""
    folder = (local.tensorboard_dir(Path(rec.local_dir)) if rec.spec.backend == "local"
              else data_dir() / "jobs" / rec.id / "tensorboard")
    best = events.best_epoch(folder)
    if best is None:
        return None
    name = rec.spec.lora_name
    wanted = f"{name}.safetensors" if best["epoch"] == best["last_epoch"] and rec.status == "Completed" else \
        f"{name}-{best['epoch']:06d}.safetensors"
    best["file"] = next((p.name for p in lora_files if p.name == wanted), "")
    return best


def text(best: dict | None) -> str:
    """'best epoch 3 (validation loss 0.0812): NAME-000003.safetensors', as the tab and the CLI show it."""
    if not best:
        return ""
    where = best.get("file") or "its file was not saved (save_every_n_epochs = 1 keeps every epoch)"
    return f"best epoch {best['epoch']} (validation loss {best['loss']:.4f}): {where}"
