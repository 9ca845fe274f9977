"""Captions -> what FLUX.1's transformer reads: CLIP-L's pooled output (y) and T5-XXL's hidden states (txt), as
sd-scripts' library/strategy_flux.py encodes them (CLIP: 77 tokens, pooler_output; T5: t5xxl_max_token_length
tokens padded to that length, last hidden state; the T5 padding mask kept for apply_t5_attn_mask), and the cache
that lets both encoders leave the GPU before the transformer arrives."""
from __future__ import annotations

import torch

CLIP_LENGTH = 77


@torch.no_grad()
def encode_text(components, captions: list[str], t5_length: int, device, apply_t5_mask: bool = False):
    """(pooled (B, 768), t5 states (B, T, 4096), t5 mask (B, T))."""
    clip, t5 = components.text_encoders
    if clip is None or t5 is None:
        raise RuntimeError("the text encoders were released after caching, and this caption is not in the cache")
    clip_tok, t5_tok = components.tokenizers
    ids = clip_tok(captions, max_length=CLIP_LENGTH, padding="max_length", truncation=True,
                   return_tensors="pt").input_ids.to(device)
    pooled = clip(ids).pooler_output
    tokens = t5_tok(captions, max_length=t5_length, padding="max_length", truncation=True, return_tensors="pt")
    mask = tokens.attention_mask.to(device)
    states = t5(tokens.input_ids.to(device), attention_mask=mask if apply_t5_mask else None).last_hidden_state
    return pooled, states, mask


class TextCache:
    """Encoder outputs per caption (kept on the CPU in the encoders' dtype), filled once before training."""

    def __init__(self, t5_length: int, apply_t5_mask: bool):
        self.t5_length, self.apply_t5_mask = t5_length, apply_t5_mask
        self.memory: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def fill(self, components, captions: list[str], device, batch: int = 4) -> None:
        todo = sorted({c for c in captions if c not in self.memory})
        for i in range(0, len(todo), batch):
            chunk = todo[i:i + batch]
            pooled, states, mask = encode_text(components, chunk, self.t5_length, device, self.apply_t5_mask)
            for j, caption in enumerate(chunk):
                self.memory[caption] = (pooled[j].cpu(), states[j].cpu(), mask[j].cpu())

    def __contains__(self, caption: str) -> bool:
        return caption in self.memory

    def get(self, captions: list[str], device, dtype: torch.dtype | None = None):
        rows = [self.memory[c] for c in captions]
        pooled, states, mask = (torch.stack([r[i] for r in rows]).to(device) for i in range(3))
        if dtype is not None:
            pooled, states = pooled.to(dtype), states.to(dtype)
        return pooled, states, mask
