"""Kohya LoRA files for the tiny SD 1.5 model with random (non-zero) weights: stand-ins for a job's epoch files.
Also used by tests/webui (run in the trainer environment: `python -c "from tests.trainer.epoch_grid_helpers ..."`)."""
from __future__ import annotations

from pathlib import Path

import torch


def write_epoch_loras(base: Path | str, out_dir: Path | str, name: str, epochs: int = 2) -> list[Path]:
    """<name>-000001.safetensors ... and <name>.safetensors (the final file), each with other random weights."""
    from cloudlora_backend.trainer.model.load import load_components
    from cloudlora_backend.trainer.network import lora

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for epoch in range(1, epochs + 1):
        c = load_components(base)
        lora.add_lora(c, rank=4, alpha=4, train_text_encoder=True)
        g = torch.Generator().manual_seed(epoch)
        with torch.no_grad():
            for model in [c.unet, *c.text_encoders]:
                for pname, p in model.named_parameters():
                    if "lora_" in pname:
                        p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        stem = name if epoch == epochs else f"{name}-{epoch:06d}"
        paths.append(lora.save_kohya(out_dir / f"{stem}.safetensors", c, 4, 4, {"steps": epoch}))
    return paths
