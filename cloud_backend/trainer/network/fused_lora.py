"""A fused LoRA linear beside peft's: the same parameters, names and Kohya keys, fewer dispatched ops per call.

peft's `lora.Linear` runs, per call under autocast: the base matmul, a cast of the input to the fp32 LoRA dtype and
back, a cast of each fp32 LoRA weight to bf16, two skinny matmuls, a scale and an add; and about as many ops again
backward (on SDXL's 722 modules that is about half of a step's ~20,000 GPU kernels). Here one autograd function
does `x W^T + b` (one addmm), `h = x A^T` (one mm) and `out += s h B^T` (one in-place addmm) forward, and five
matmuls backward, in the compute dtype. The LoRA weights' compute-dtype copies are refreshed once before a forward
whenever the fp32 masters changed (the optimizer stepped, a checkpoint was restored), in one multi-tensor copy, not
cast twice per call; the masters still receive fp32 gradients and stay what the optimizer, the checkpoint and the
Kohya writer see. A layer becomes a `FusedLoraLinear` by a class swap: it keeps peft's own forward for anything the
fused path does not cover (several or disabled adapters, merged weights, dropout, DoRA and other variants, extra
forward arguments), and other layer kinds (LoCon's Conv2d, ...) are never swapped. Forward pre-hooks on a layer
(the trainer's DoRA, dora.py, scales the input in one) run before the fused forward exactly as before peft's.

With the compute dtype equal to the masters' (fp32 on a CPU) no copy is made; the saving is then the fused ops.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

ADAPTER = "default"
_ZEROS: dict[tuple, torch.Tensor] = {}


def _zero(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A cached 0-d zero: addmm's ignored input when beta=0 (a new one each call would be a fill kernel)."""
    key = (device, dtype)
    z = _ZEROS.get(key)
    if z is None:
        z = _ZEROS[key] = torch.zeros((), device=device, dtype=dtype)
    return z


def _mm_scaled(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """scale * (a @ b) as one matmul (the scale in the GEMM's alpha)."""
    if scale == 1.0:
        return torch.mm(a, b)
    return torch.addmm(_zero(a.device, a.dtype), a, b, beta=0, alpha=scale)


_OUT_DTYPE_WORKS: dict[tuple, bool] = {}


def _out_dtype_works(device: torch.device, src: torch.dtype, dst: torch.dtype) -> bool:
    """Whether addmm(..., out_dtype=dst) gives the right answer for src inputs here (CUDA has it for bf16/fp16 ->
    fp32; the CPU does not). Tried once per device and dtype pair, against the cast it replaces."""
    key = (device, src, dst)
    ok = _OUT_DTYPE_WORKS.get(key)
    if ok is None:
        try:
            g = torch.Generator(device=device).manual_seed(0)
            a = torch.randn(64, 48, device=device, generator=g).to(src)
            b = torch.randn(48, 32, device=device, generator=g).to(src)
            got = torch.addmm(torch.zeros((), device=device, dtype=dst), a, b, out_dtype=dst, beta=0, alpha=0.5)
            want = 0.5 * (a.to(dst) @ b.to(dst))
            ok = got.dtype == dst and bool(torch.allclose(got, want, rtol=1e-2, atol=1e-2))
        except (RuntimeError, TypeError, NotImplementedError):
            ok = False
        _OUT_DTYPE_WORKS[key] = ok
    return ok


def _grad_in(a: torch.Tensor, b: torch.Tensor, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """scale * (a @ b) in `dtype`, the fp32 masters' dtype: one GEMM writing fp32 where the device can (the cast
    it saves runs once per LoRA weight and step), else the GEMM in the compute dtype and a cast."""
    if a.dtype != dtype and a.device.type == "cuda" and _out_dtype_works(a.device, a.dtype, dtype):
        return torch.addmm(_zero(a.device, dtype), a, b, out_dtype=dtype, beta=0, alpha=scale)
    out = _mm_scaled(a, b, scale)
    return out if out.dtype == dtype else out.to(dtype)


class _LoraLinearFn(torch.autograd.Function):
    """out = x W^T + bias + scale * (x A^T) B^T, with W, bias, A_work, B_work already in the compute dtype.

    a and b are the fp32 masters: they are inputs only so that autograd hands their gradients back (in their
    dtype); the arithmetic uses a_work and b_work, which may be the masters themselves."""

    @staticmethod
    def forward(ctx, x, weight, bias, a, b, a_work, b_work, scale):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if x2.dtype != weight.dtype:
            x2 = x2.to(weight.dtype)
        h = torch.mm(x2, a_work.t())
        out = F.linear(x2, weight, bias)
        out.addmm_(h, b_work.t(), alpha=scale)
        ctx.save_for_backward(x2, h, weight, a_work, b_work)
        ctx.scale, ctx.x_shape, ctx.x_dtype, ctx.a_dtype, ctx.b_dtype = scale, shape, x.dtype, a.dtype, b.dtype
        return out.view(*shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        x2, h, weight, a_work, b_work = ctx.saved_tensors
        s = ctx.scale
        g = grad.reshape(-1, grad.shape[-1])
        if g.dtype != weight.dtype:
            g = g.to(weight.dtype)
        gh = torch.mm(g, b_work)  # dL/dh without the scale
        gx = ga = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.mm(g, weight)
            gx.addmm_(gh, a_work, alpha=s)
            gx = gx.view(ctx.x_shape)
            if gx.dtype != ctx.x_dtype:
                gx = gx.to(ctx.x_dtype)
        if ctx.needs_input_grad[3]:
            ga = _grad_in(gh.t(), x2, s, ctx.a_dtype)
        if ctx.needs_input_grad[4]:
            gb = _grad_in(g.t(), h, s, ctx.b_dtype)
        return gx, None, None, ga, gb, None, None, None


def _peft_linear():
    from peft.tuners.lora.layer import Linear

    return Linear


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    dev = x.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return x.dtype


class FusedLoraLinear(_peft_linear()):
    """peft's lora.Linear with the fused forward; `fuse(model)` turns a model's plain LoRA linears into these."""

    _fused_copies: "WorkingCopies | None" = None
    _fused_work: tuple | None = None  # (token, dtype, a_work, b_work)

    def _fusable_now(self) -> bool:
        return (not self.disable_adapters and not self.merged and self.active_adapters == [ADAPTER]
                and _plain_adapter(self))

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if args or kwargs or not self._fusable_now():
            return super().forward(x, *args, **kwargs)
        a, b = self.lora_A[ADAPTER].weight, self.lora_B[ADAPTER].weight
        cd = _compute_dtype(x)
        if cd == a.dtype == b.dtype:
            a_work, b_work = a, b
        else:
            work = self._fused_work
            copies = self._fused_copies
            if (work is not None and copies is not None and work[0] == copies.token and work[1] == cd
                    and work[2].device == a.device):
                a_work, b_work = work[2], work[3]
            else:  # not refreshed by the model's pre-hook (a direct call): cast here, as autocast would
                a_work, b_work = a.to(cd), b.to(cd)
        base = self.base_layer
        weight, bias = base.weight, base.bias
        if weight.dtype != cd:
            weight = weight.to(cd)
        if bias is not None and bias.dtype != cd:
            bias = bias.to(cd)
        return _LoraLinearFn.apply(x, weight, bias, a, b, a_work, b_work, float(self.scaling[ADAPTER]))


def _plain_adapter(module) -> bool:
    """Our adapter, plain: no DoRA or other variant, no dropout, no LoRA bias, the usual weight layout."""
    return (ADAPTER in module.lora_A and not getattr(module, "lora_variant", {}).get(ADAPTER)
            and not getattr(module, "use_dora", {}).get(ADAPTER)
            and isinstance(module.lora_dropout[ADAPTER], torch.nn.Identity) and not module.fan_in_fan_out
            and getattr(module.lora_B[ADAPTER], "bias", None) is None)


def plain_lora_linear(module) -> bool:
    """A peft LoRA linear that the fused path covers: exactly peft's class, with a plain adapter."""
    return type(module) is _peft_linear() and _plain_adapter(module)


class WorkingCopies:
    """The compute-dtype copies of one model's fused LoRA weights, refreshed before the model's forward when the
    masters changed (by version or storage) or `mark_stale()` was called (an optimizer that writes through raw
    pointers, such as bitsandbytes', does not bump versions: the trainer marks after each optimizer step)."""

    def __init__(self, layers: list[FusedLoraLinear]):
        self.layers = layers
        self.token = 0
        self.stale = True
        self._seen: list | None = None
        self._buffers: list[torch.Tensor] | None = None

    def masters(self) -> list[torch.Tensor]:
        return [w for m in self.layers for w in (m.lora_A[ADAPTER].weight, m.lora_B[ADAPTER].weight)]

    def mark_stale(self) -> None:
        self.stale = True

    def refresh(self, dtype: torch.dtype) -> None:
        masters = self.masters()
        if not masters or all(m.dtype == dtype for m in masters):
            return
        seen = [(m.data_ptr(), m._version) for m in masters]
        buffers = self._buffers
        if (buffers is None or len(buffers) != len(masters) or buffers[0].dtype != dtype
                or any(b.shape != m.shape or b.device != m.device for b, m in zip(buffers, masters))):
            buffers = self._buffers = [torch.empty_like(m, dtype=dtype) for m in masters]
        elif not self.stale and seen == self._seen:
            return
        with torch.no_grad():
            try:
                torch._foreach_copy_(buffers, masters)
            except (RuntimeError, AttributeError):  # older torch, or mixed devices
                for b, m in zip(buffers, masters):
                    b.copy_(m)
        self.token += 1
        for i, layer in enumerate(self.layers):
            layer._fused_work = (self.token, dtype, buffers[2 * i], buffers[2 * i + 1])
        self._seen, self.stale = seen, False


def _pre_hook(copies: WorkingCopies):
    def hook(module, args):
        params = next(module.parameters(), None)
        if params is None:
            return
        dev = params.device.type
        if torch.is_autocast_enabled(dev):
            copies.refresh(torch.get_autocast_dtype(dev))
    return hook


def fuse(model: torch.nn.Module) -> WorkingCopies | None:
    """Swaps the model's plain peft LoRA linears for FusedLoraLinear; returns their WorkingCopies (None if none).

    Idempotent. The model's own forward pre-hook refreshes the copies; `unfuse` undoes it all."""
    existing = getattr(model, "_cloudlora_fused", None)
    if existing is not None:
        return existing[0]
    layers = []
    for module in model.modules():
        if plain_lora_linear(module):
            module.__class__ = FusedLoraLinear
            layers.append(module)
    if not layers:
        return None
    copies = WorkingCopies(layers)
    for layer in layers:
        layer._fused_copies = copies
    handle = model.register_forward_pre_hook(_pre_hook(copies))
    model._cloudlora_fused = (copies, handle)
    return copies


def unfuse(model: torch.nn.Module) -> None:
    """peft's own forward again for every fused layer of the model."""
    existing = getattr(model, "_cloudlora_fused", None)
    if existing is None:
        return
    copies, handle = existing
    handle.remove()
    for layer in copies.layers:
        layer.__class__ = _peft_linear()
        layer.__dict__.pop("_fused_copies", None)
        layer.__dict__.pop("_fused_work", None)
    del model._cloudlora_fused
