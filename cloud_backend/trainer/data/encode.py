"""Turning captions and images into what the UNet reads: text-encoder states (SD1.5 / SDXL rules) and VAE latents,
with the optional caches (latents in memory or on disk in the job's cache folder; text outputs in memory)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .dataset import Example, load_pixels

MAX_LENGTH = 77


def _tokens(tokenizer, captions: list[str], device) -> torch.Tensor:
    return tokenizer(captions, padding="max_length", max_length=MAX_LENGTH, truncation=True,
                     return_tensors="pt").input_ids.to(device)


def encode_text(components, captions: list[str], clip_skip: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(encoder_hidden_states, pooled or None). SD1.5: last layer, or layer -clip_skip through the final layer norm
    (as sd-scripts); SDXL: both encoders' penultimate layers concatenated, pooled from the second."""
    encoders, tokenizers = components.text_encoders, components.tokenizers
    if len(encoders) == 1:
        te = encoders[0]
        out = te(_tokens(tokenizers[0], captions, device), output_hidden_states=True)
        if clip_skip > 1:
            h = out.hidden_states[-clip_skip]
            return getattr(te, "text_model", te).final_layer_norm(h), None
        return out.last_hidden_state, None
    out1 = encoders[0](_tokens(tokenizers[0], captions, device), output_hidden_states=True)
    out2 = encoders[1](_tokens(tokenizers[1], captions, device), output_hidden_states=True)
    hidden = torch.cat([out1.hidden_states[-2], out2.hidden_states[-2]], dim=-1)
    return hidden, out2.text_embeds


def latent_scale(vae) -> tuple[float, float]:
    cfg = vae.config
    return float(cfg.scaling_factor), float(getattr(cfg, "shift_factor", None) or 0.0)


@torch.no_grad()
def encode_pixels(vae, pixels: torch.Tensor) -> torch.Tensor:
    """Scaled latents of [-1, 1] pixels: the posterior mean, so cached and uncached training see the same latents."""
    scale, shift = latent_scale(vae)
    dist = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
    return ((dist.mean - shift) * scale).float()


class LatentCache:
    """Latents per (image, flip), computed once. With a folder, they live on disk (one small file each), so a
    resumed job skips the VAE; never inside the user's dataset."""

    def __init__(self, vae, folder: Path | None = None, batch_size: int = 1):
        self.vae = vae
        self.folder = Path(folder) if folder else None
        self.batch_size = max(1, batch_size)
        self.memory: dict[str, torch.Tensor] = {}

    @staticmethod
    def key(ex: Example, flip: bool) -> str:
        st = ex.image.stat()
        raw = f"{ex.image}|{st.st_size}|{st.st_mtime_ns}|{ex.placement}|{flip}"
        return hashlib.sha1(raw.encode()).hexdigest()

    def fill(self, examples: list[Example], flips: list[bool], progress=None) -> None:
        todo = []
        for ex in examples:
            for flip in flips:
                k = self.key(ex, flip)
                if k in self.memory:
                    continue
                if self.folder and (self.folder / f"{k}.safetensors").is_file():
                    self.memory[k] = load_file(str(self.folder / f"{k}.safetensors"))["latent"]
                    continue
                todo.append((ex, flip, k))
        # Same-bucket images batch together through the VAE.
        todo.sort(key=lambda t: t[0].placement.bucket)
        i = 0
        while i < len(todo):
            group = [todo[i]]
            while (len(group) < self.batch_size and i + len(group) < len(todo)
                   and todo[i + len(group)][0].placement.bucket == group[0][0].placement.bucket):
                group.append(todo[i + len(group)])
            pixels = torch.from_numpy(np.stack([load_pixels(ex, flip) for ex, flip, _ in group]))
            lat = encode_pixels(self.vae, pixels).cpu()
            for (ex, flip, k), one in zip(group, lat):
                one = one.contiguous()
                self.memory[k] = one
                if self.folder:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    save_file({"latent": one}, str(self.folder / f"{k}.safetensors"))
            i += len(group)
            if progress:
                progress(i, len(todo))

    def get(self, ex: Example, flip: bool) -> torch.Tensor:
        return self.memory[self.key(ex, flip)]


class TextCache:
    """Text-encoder outputs per caption, for frozen encoders and captions that never change."""

    def __init__(self):
        self.memory: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

    @torch.no_grad()
    def fill(self, components, captions: list[str], clip_skip: int, device) -> None:
        todo = sorted({c for c in captions if c not in self.memory})
        for i in range(0, len(todo), 8):
            chunk = todo[i:i + 8]
            hidden, pooled = encode_text(components, chunk, clip_skip, device)
            for j, c in enumerate(chunk):
                self.memory[c] = (hidden[j].float().cpu(), None if pooled is None else pooled[j].float().cpu())

    def get(self, captions: list[str], device) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden = torch.stack([self.memory[c][0] for c in captions]).to(device)
        pooled = self.memory[captions[0]][1]
        if pooled is not None:
            pooled = torch.stack([self.memory[c][1] for c in captions]).to(device)
        return hidden, pooled
