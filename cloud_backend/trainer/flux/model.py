"""The FLUX.1 transformer in Black Forest Labs' own module layout, so LoRA module paths are the Kohya key names.

Ported from BFL's reference code (github.com/black-forest-labs/flux, src/flux/model.py and src/flux/modules/
layers.py, Apache-2.0) as kohya-ss/sd-scripts carries it in library/flux_models.py, without einops, block swapping
or ControlNet. Training on this layout instead of diffusers' FluxTransformer2DModel puts every LoRA on the module
that sd-scripts' networks/lora_flux.py adapts (`double_blocks.N.img_attn.qkv`, `single_blocks.N.linear1`, ...) with
the same rank, so the saved file has the shapes of an sd-scripts Flux LoRA. tests/trainer/test_flux_model.py checks
this model output for output against diffusers' implementation on the same weights.

fp8 frozen base: every Linear here is `Linear`, whose weight may be stored as float8_e4m3fn and is upcast to the
compute dtype for each matmul, so the stored base halves against bf16 while the arithmetic stays bf16 (fp32 on CPU).
`cast_frozen_linears` does the storage cast after the LoRA is in place (sd-scripts' --fp8_base does the same).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

FP8 = getattr(torch, "float8_e4m3fn", None)
FP8_MAX = 448.0  # the largest finite float8_e4m3fn value; a plain cast turns larger magnitudes into NaN


@dataclass(frozen=True)
class FluxParams:
    """The architecture; the defaults are FLUX.1-dev's (sd-scripts' flux_models.configs["dev"])."""

    in_channels: int = 64
    vec_in_dim: int = 768  # CLIP-L's pooled width
    context_in_dim: int = 4096  # T5-XXL's width
    hidden_size: int = 3072
    mlp_ratio: float = 4.0
    num_heads: int = 24
    depth: int = 19
    depth_single_blocks: int = 38
    axes_dim: tuple[int, ...] = (16, 56, 56)
    theta: int = 10_000
    qkv_bias: bool = True
    guidance_embed: bool = True  # dev: True; schnell: False


def _compute_dtype(x: Tensor) -> torch.dtype:
    device = x.device.type
    try:
        if torch.is_autocast_enabled(device):
            return torch.get_autocast_dtype(device)
    except TypeError:  # torch < 2.4: no per-device autocast queries
        if device == "cuda" and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
    return x.dtype


class Linear(nn.Linear):
    """nn.Linear whose weight may be stored in another dtype (fp8): it is upcast to the compute dtype per call."""

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.weight, self.bias
        if weight.dtype != x.dtype:
            dtype = _compute_dtype(x)
            weight = weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
            x = x.to(dtype)
        return F.linear(x, weight, bias)


def cast_frozen_linears(model: nn.Module, dtype: torch.dtype) -> int:
    """Stores every frozen `Linear` weight of the model as `dtype` (e.g. float8_e4m3fn); returns how many.

    LoRA weights (trainable) and biases, norms and embeddings are left as they are. Values are clamped to fp8's
    finite range first (a plain cast makes NaN of anything beyond it)."""
    count = 0
    for module in model.modules():
        if isinstance(module, Linear) and not module.weight.requires_grad:
            w = module.weight.data
            if dtype == FP8:
                w = w.clamp(-FP8_MAX, FP8_MAX)
            module.weight.data = w.to(dtype)
            count += 1
    return count


# --- math (BFL src/flux/math.py)

def rope(pos: Tensor, dim: int, theta: int) -> Tensor:
    scale = torch.arange(0, dim, 2, dtype=torch.float64, device=pos.device) / dim
    omega = 1.0 / (theta ** scale)
    out = pos.to(torch.float64).unsqueeze(-1) * omega  # ... n, d/2
    out = torch.stack([torch.cos(out), -torch.sin(out), torch.sin(out), torch.cos(out)], dim=-1)
    return out.view(*out.shape[:-1], 2, 2).float()


def apply_rope(xq: Tensor, xk: Tensor, freqs_cis: Tensor) -> tuple[Tensor, Tensor]:
    xq_ = xq.float().reshape(*xq.shape[:-1], -1, 1, 2)
    xk_ = xk.float().reshape(*xk.shape[:-1], -1, 1, 2)
    xq_out = freqs_cis[..., 0] * xq_[..., 0] + freqs_cis[..., 1] * xq_[..., 1]
    xk_out = freqs_cis[..., 0] * xk_[..., 0] + freqs_cis[..., 1] * xk_[..., 1]
    return xq_out.reshape(*xq.shape).type_as(xq), xk_out.reshape(*xk.shape).type_as(xk)


def attention(q: Tensor, k: Tensor, v: Tensor, pe: Tensor, attn_mask: Tensor | None = None) -> Tensor:
    q, k = apply_rope(q, k, pe)
    x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # B H L D
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)


def split_heads(qkv: Tensor, num_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """B L (3 H D) -> three B H L D tensors."""
    b, length, width = qkv.shape
    q, k, v = qkv.view(b, length, 3, num_heads, width // (3 * num_heads)).permute(2, 0, 3, 1, 4)
    return q, k, v


def timestep_embedding(t: Tensor, dim: int, max_period: int = 10000, time_factor: float = 1000.0) -> Tensor:
    t = time_factor * t
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding.to(t) if torch.is_floating_point(t) else embedding


def _mask(txt_attention_mask: Tensor | None, total: int, heads: int, queries: int) -> Tensor | None:
    """The T5 padding mask (apply_t5_attn_mask) over [txt, img] keys, as sd-scripts builds it."""
    if txt_attention_mask is None:
        return None
    mask = txt_attention_mask.to(torch.bool)
    ones = torch.ones(mask.shape[0], total - mask.shape[1], device=mask.device, dtype=torch.bool)
    mask = torch.cat((mask, ones), dim=1)
    return mask[:, None, None, :].expand(-1, heads, queries, -1)


# --- layers (BFL src/flux/modules/layers.py)

class EmbedND(nn.Module):
    def __init__(self, dim: int, theta: int, axes_dim: tuple[int, ...]):
        super().__init__()
        self.dim, self.theta, self.axes_dim = dim, theta, tuple(axes_dim)

    def forward(self, ids: Tensor) -> Tensor:
        emb = torch.cat([rope(ids[..., i], self.axes_dim[i], self.theta) for i in range(ids.shape[-1])], dim=-3)
        return emb.unsqueeze(1)


class MLPEmbedder(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int):
        super().__init__()
        self.in_layer = Linear(in_dim, hidden_dim, bias=True)
        self.silu = nn.SiLU()
        self.out_layer = Linear(hidden_dim, hidden_dim, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_layer(self.silu(self.in_layer(x)))


class RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x = x.float()
        rrms = torch.rsqrt(torch.mean(x ** 2, dim=-1, keepdim=True) + 1e-6)
        return ((x * rrms) * self.scale.float()).to(dtype)


class QKNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.query_norm = RMSNorm(dim)
        self.key_norm = RMSNorm(dim)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        return self.query_norm(q).to(v), self.key_norm(k).to(v)


class SelfAttention(nn.Module):
    """Holds qkv / norm / proj; the blocks run the attention themselves (as in BFL's code)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = Linear(dim, dim * 3, bias=qkv_bias)
        self.norm = QKNorm(dim // num_heads)
        self.proj = Linear(dim, dim)


class Modulation(nn.Module):
    def __init__(self, dim: int, double: bool):
        super().__init__()
        self.multiplier = 6 if double else 3
        self.lin = Linear(dim, self.multiplier * dim, bias=True)

    def forward(self, vec: Tensor) -> list[Tensor]:
        """[shift, scale, gate] (x2 for double blocks), each B 1 D."""
        return list(self.lin(F.silu(vec))[:, None, :].chunk(self.multiplier, dim=-1))


class DoubleStreamBlock(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, qkv_bias: bool):
        super().__init__()
        mlp_hidden = int(hidden_size * mlp_ratio)
        self.num_heads = num_heads
        for stream in ("img", "txt"):
            setattr(self, f"{stream}_mod", Modulation(hidden_size, double=True))
            setattr(self, f"{stream}_norm1", nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6))
            setattr(self, f"{stream}_attn", SelfAttention(hidden_size, num_heads, qkv_bias))
            setattr(self, f"{stream}_norm2", nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6))
            setattr(self, f"{stream}_mlp", nn.Sequential(Linear(hidden_size, mlp_hidden, bias=True),
                                                         nn.GELU(approximate="tanh"),
                                                         Linear(mlp_hidden, hidden_size, bias=True)))

    def _prepare(self, stream: str, x: Tensor, mod: list[Tensor]):
        attn = getattr(self, f"{stream}_attn")
        modulated = (1 + mod[1]) * getattr(self, f"{stream}_norm1")(x) + mod[0]
        q, k, v = split_heads(attn.qkv(modulated), self.num_heads)
        q, k = attn.norm(q, k, v)
        return q, k, v

    def forward(self, img: Tensor, txt: Tensor, vec: Tensor, pe: Tensor,
                txt_attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        img_mod, txt_mod = self.img_mod(vec), self.txt_mod(vec)
        img_q, img_k, img_v = self._prepare("img", img, img_mod)
        txt_q, txt_k, txt_v = self._prepare("txt", txt, txt_mod)
        q, k, v = (torch.cat(pair, dim=2) for pair in ((txt_q, img_q), (txt_k, img_k), (txt_v, img_v)))
        mask = _mask(txt_attention_mask, q.shape[2], q.shape[1], q.shape[2])
        attn = attention(q, k, v, pe, mask)
        txt_attn, img_attn = attn[:, : txt.shape[1]], attn[:, txt.shape[1]:]
        img = img + img_mod[2] * self.img_attn.proj(img_attn)
        img = img + img_mod[5] * self.img_mlp((1 + img_mod[4]) * self.img_norm2(img) + img_mod[3])
        txt = txt + txt_mod[2] * self.txt_attn.proj(txt_attn)
        txt = txt + txt_mod[5] * self.txt_mlp((1 + txt_mod[4]) * self.txt_norm2(txt) + txt_mod[3])
        return img, txt


class SingleStreamBlock(nn.Module):
    """A DiT block with parallel linear layers (arXiv 2302.05442): linear1 = qkv + mlp in, linear2 = proj + mlp out."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.mlp_hidden = int(hidden_size * mlp_ratio)
        self.linear1 = Linear(hidden_size, hidden_size * 3 + self.mlp_hidden)
        self.linear2 = Linear(hidden_size + self.mlp_hidden, hidden_size)
        self.norm = QKNorm(hidden_size // num_heads)
        self.pre_norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp_act = nn.GELU(approximate="tanh")
        self.modulation = Modulation(hidden_size, double=False)

    def forward(self, x: Tensor, vec: Tensor, pe: Tensor, txt_attention_mask: Tensor | None = None) -> Tensor:
        shift, scale, gate = self.modulation(vec)
        x_mod = (1 + scale) * self.pre_norm(x) + shift
        qkv, mlp = torch.split(self.linear1(x_mod), [3 * self.hidden_size, self.mlp_hidden], dim=-1)
        q, k, v = split_heads(qkv, self.num_heads)
        q, k = self.norm(q, k, v)
        attn = attention(q, k, v, pe, _mask(txt_attention_mask, x.shape[1], self.num_heads, x.shape[1]))
        return x + gate * self.linear2(torch.cat((attn, self.mlp_act(mlp)), 2))


class LastLayer(nn.Module):
    def __init__(self, hidden_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = Linear(hidden_size, out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: Tensor, vec: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(vec).chunk(2, dim=1)
        return self.linear((1 + scale[:, None, :]) * self.norm_final(x) + shift[:, None, :])


class Flux(nn.Module):
    """Transformer for flow matching on packed latents: img (B, L_img, 64), txt = T5 states, y = CLIP pooled."""

    def __init__(self, params: FluxParams):
        super().__init__()
        p = self.params = params
        if p.hidden_size % p.num_heads:
            raise ValueError(f"hidden size {p.hidden_size} is not divisible by {p.num_heads} heads")
        head_dim = p.hidden_size // p.num_heads
        if sum(p.axes_dim) != head_dim:
            raise ValueError(f"rope axes {p.axes_dim} do not add up to the head width {head_dim}")
        self.pe_embedder = EmbedND(head_dim, p.theta, p.axes_dim)
        self.img_in = Linear(p.in_channels, p.hidden_size, bias=True)
        self.time_in = MLPEmbedder(256, p.hidden_size)
        self.vector_in = MLPEmbedder(p.vec_in_dim, p.hidden_size)
        self.guidance_in = MLPEmbedder(256, p.hidden_size) if p.guidance_embed else nn.Identity()
        self.txt_in = Linear(p.context_in_dim, p.hidden_size)
        self.double_blocks = nn.ModuleList(
            [DoubleStreamBlock(p.hidden_size, p.num_heads, p.mlp_ratio, p.qkv_bias) for _ in range(p.depth)])
        self.single_blocks = nn.ModuleList(
            [SingleStreamBlock(p.hidden_size, p.num_heads, p.mlp_ratio) for _ in range(p.depth_single_blocks)])
        self.final_layer = LastLayer(p.hidden_size, p.in_channels)
        self.gradient_checkpointing = False

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.img_in.bias.dtype  # weights may be fp8; the biases keep the compute dtype

    def enable_gradient_checkpointing(self) -> None:
        """Recompute each block in the backward pass instead of keeping its activations (sd-scripts does the same)."""
        self.gradient_checkpointing = True

    def disable_gradient_checkpointing(self) -> None:
        self.gradient_checkpointing = False

    def _run(self, block, *args):
        if self.training and self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def forward(self, img: Tensor, img_ids: Tensor, txt: Tensor, txt_ids: Tensor, timesteps: Tensor, y: Tensor,
                guidance: Tensor | None = None, txt_attention_mask: Tensor | None = None) -> Tensor:
        """timesteps and guidance as BFL passes them: sigma in [0, 1] and the guidance scale (x1000 inside)."""
        if img.ndim != 3 or txt.ndim != 3:
            raise ValueError("img and txt must be (batch, tokens, channels)")
        img = self.img_in(img)
        vec = self.time_in(timestep_embedding(timesteps, 256))
        if self.params.guidance_embed:
            if guidance is None:
                raise ValueError("this is a guidance-distilled model (FLUX.1-dev): pass the guidance scale")
            vec = vec + self.guidance_in(timestep_embedding(guidance, 256))
        vec = vec + self.vector_in(y)
        txt = self.txt_in(txt)
        pe = self.pe_embedder(torch.cat((txt_ids, img_ids), dim=1))
        for block in self.double_blocks:
            img, txt = self._run(block, img, txt, vec, pe, txt_attention_mask)
        x = torch.cat((txt, img), 1)
        for block in self.single_blocks:
            x = self._run(block, x, vec, pe, txt_attention_mask)
        return self.final_layer(x[:, txt.shape[1]:, ...], vec)


# --- latent packing (sd-scripts library/flux_utils.py)

def pack_latents(x: Tensor) -> Tensor:
    """B C (H 2) (W 2) -> B (H W) (C 2 2): the 2x2 patches the transformer reads."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(x: Tensor, height: int, width: int) -> Tensor:
    """B (H W) (C 2 2) -> B C (H 2) (W 2); height/width are the packed grid's."""
    b, _, d = x.shape
    c = d // 4
    x = x.view(b, height, width, c, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, height * 2, width * 2)


def img_ids(batch: int, height: int, width: int, device=None) -> Tensor:
    """Positions (0, row, col) of each packed patch, for the rotary embedding."""
    ids = torch.zeros(height, width, 3, device=device)
    ids[..., 1] = torch.arange(height, device=device)[:, None]
    ids[..., 2] = torch.arange(width, device=device)[None, :]
    return ids.reshape(1, height * width, 3).expand(batch, -1, -1)
