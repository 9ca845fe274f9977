"""What a FLUX.1 LoRA job needs: the hosts that can use the result, GPU and host memory per setting, which instance
types fit, and the FLOPs per image for the estimate. Pure Python (the tab, the CLI and REST share it).

Numbers are computed from FLUX.1-dev's architecture (BFL's flux1-dev: hidden 3072, 24 heads, 19 double + 38 single
blocks, MLP ratio 4, T5-XXL 4096 wide, CLIP-L pooled 768), not measured on a GPU; docs/flux.md shows the table.

Parameters: transformer 11.90 B (23.8 GB bf16, 11.9 GB fp8), T5-XXL encoder 4.76 B (9.5 GB bf16), CLIP-L 0.12 B,
AE 0.08 B. A rank-r LoRA on sd-scripts' module set holds r x 4.79 M parameters (rank 16: 76.6 M, 153 MB in bf16).

GPU memory, in the trainer's order (the encoders finish and leave before the transformer arrives):
- caching: T5-XXL + CLIP-L + AE in bf16, about 11 GB;
- training: the transformer's weights (fp8_base: 11.9 GB, else 23.8 GB) + the LoRA with its gradients and AdamW
  state (16 bytes per parameter: 1.2 GB at rank 16) + activations with gradient checkpointing (each of the 57
  blocks keeps its input, L x 3072 bf16 values, and one block at a time is recomputed, about 40 such tensors; at
  1024 px, L = 4096 image + 512 text tokens: 1.6 + 1.1 GB per image) + 1.5 GB of CUDA context and allocator slack.
  1024 px, batch 1, rank 16: about 17.5 GB with fp8_base, 29.4 GB without; without checkpointing the activations
  alone exceed 60 GB.
Host memory: the transformer waits in host memory while the encoders run when it does not fit beside them on the
GPU (24 GB cards), so an fp8 base there needs about 12 GB plus the process (about 4 GB) plus room for the OS and page
cache: 32 GiB instances. On a 48 GB card it loads straight onto the GPU.

FLOPs per image (multiply-add = 2 FLOP): each of the 57 blocks applies 12 h^2 weights per token (double: qkv 3h^2,
proj h^2, MLP 8h^2 on each of its two streams, each stream over its own tokens; single: linear1 7h^2, linear2 5h^2)
and attention over all L tokens (2 L^2 h). Forward at 1024 px with 512 T5 tokens: 74.3 TFLOP; a LoRA training
step costs 2.13 forwards (the backward pass through the activations, no base-weight gradients: the ratio measured
for SDXL in REFERENCE.md) = 158 TFLOP, and gradient checkpointing adds another forward (estimate.py's factor).
"""
from __future__ import annotations

from dataclasses import dataclass

from .sagemaker_backend import instances

HIDDEN, DEPTH, SINGLE, MLP_RATIO = 3072, 19, 38, 4.0
TRANSFORMER_PARAMS = 11.90e9
T5_GB, CLIP_GB, AE_GB = 9.5, 0.25, 0.17
LORA_PARAMS_PER_RANK = 4.786e6
BLOCK_RECOMPUTE_TENSORS = 40
CONTEXT_GB = 1.5
SPARE_GB = 4.0  # the trainer loads the transformer onto the GPU beside the encoders only with this much to spare
PROCESS_GB = 4.0
STEP_FORWARDS = 2.13  # a LoRA step in forward passes (REFERENCE.md: SDXL 14.4 / 6.76)
HOSTS_THAT_LOAD_FLUX = ("forge", "standalone")
A1111_REASON = ("A1111 1.10 cannot load FLUX.1 models or LoRAs: train FLUX.1 LoRAs from Forge or the standalone app "
                "(`cloudlora ui`), where they can be used.")


def offered(host_name: str) -> tuple[bool, str]:
    """(whether FLUX.1 training is offered in this host, why not)."""
    if host_name in HOSTS_THAT_LOAD_FLUX:
        return True, ""
    return False, A1111_REASON


def tokens(width: int, height: int, t5_tokens: int = 512) -> int:
    return (width // 16) * (height // 16) + t5_tokens


def forward_tflop(width: int, height: int, t5_tokens: int = 512) -> float:
    """The transformer's forward pass for one image, in TFLOP (see the module docstring)."""
    n, h = tokens(width, height, t5_tokens), HIDDEN
    per_block = 12 * h * h * n + 2 * n * n * h
    embed = 64 * h * (n - t5_tokens) + 4096 * h * t5_tokens
    return 2 * ((DEPTH + SINGLE) * per_block + embed) / 1e12


def step_tflop(width: int, height: int, t5_tokens: int = 512) -> float:
    """One LoRA training step for one image, without gradient checkpointing, in TFLOP."""
    return STEP_FORWARDS * forward_tflop(width, height, t5_tokens)


@dataclass(frozen=True)
class Needs:
    gpu_gb: float  # peak GPU memory
    host_gb: float  # host memory
    weights_gb: float
    activations_gb: float
    lora_gb: float

    def text(self) -> str:
        return (f"~{self.gpu_gb:.0f} GB GPU (weights {self.weights_gb:.1f}, LoRA + optimizer {self.lora_gb:.1f}, "
                f"activations {self.activations_gb:.1f}), ~{self.host_gb:.0f} GB host memory")


def needs(*, fp8_base: bool = True, width: int = 1024, height: int = 1024, batch: int = 1, rank: int = 16,
          t5_tokens: int = 512, gradient_checkpointing: bool = True, vram_gb: float | None = None) -> Needs:
    """vram_gb: the GPU's memory; the transformer waits in host memory only when it cannot sit beside the encoders."""
    weights = TRANSFORMER_PARAMS * (1 if fp8_base else 2) / 1e9
    lora = LORA_PARAMS_PER_RANK * rank * 16 / 1e9
    per_token = HIDDEN * 2 / 1e9  # one bf16 hidden state
    n = tokens(width, height, t5_tokens)
    block = BLOCK_RECOMPUTE_TENSORS * n * per_token
    acts = batch * ((DEPTH + SINGLE) * n * per_token + block if gradient_checkpointing else (DEPTH + SINGLE) * block)
    training = weights + lora + acts + CONTEXT_GB
    caching = T5_GB + CLIP_GB + AE_GB + CONTEXT_GB
    waits_on_host = vram_gb is None or weights + T5_GB + CLIP_GB + AE_GB + SPARE_GB > vram_gb  # as the trainer decides
    return Needs(gpu_gb=round(max(training, caching), 1), host_gb=round(PROCESS_GB + (weights if waits_on_host else 0), 1),
                 weights_gb=round(weights, 1), activations_gb=round(acts, 1), lora_gb=round(lora, 1))


# Host memory per instance type (GiB, AWS's instance specifications); unknown types are not filtered.
HOST_GIB = {"ml.g5.xlarge": 16, "ml.g5.2xlarge": 32, "ml.g5.4xlarge": 64, "ml.g5.8xlarge": 128, "ml.g6.xlarge": 16,
            "ml.g6e.xlarge": 32, "ml.g4dn.xlarge": 16, "ml.p4d.24xlarge": 1152}
NO_BF16 = {"NVIDIA T4"}  # FLUX.1 trains in bf16


def fit(inst: instances.Instance, fp8_base: bool, **kwargs) -> tuple[bool, str]:
    """(whether FLUX.1 with these settings fits the instance, the reason or the note shown with it)."""
    if inst.is_local:  # said of the GPU this machine has, or that it has none
        from .local_backend import local_gpu

        gpu = local_gpu.describe()
        if not gpu:
            return True, "no GPU found on this machine (the CPU would take days)"
        return True, f"{gpu}: needs at least 24 GB with fp8_base, 40 GB without"
    need = needs(fp8_base=fp8_base, vram_gb=inst.vram_gb, **kwargs)
    host = HOST_GIB.get(inst.name)
    if inst.gpu in NO_BF16:
        return False, f"{inst.gpu} has no bf16"
    if inst.vram_gb < need.gpu_gb:
        if not fp8_base and inst.vram_gb >= needs(fp8_base=True, **kwargs).gpu_gb:
            return False, f"{inst.vram_gb} GB GPU: only with fp8_base = true"
        return False, f"{inst.vram_gb} GB GPU < ~{need.gpu_gb:.0f} GB needed"
    if host is not None and host < need.host_gb + 8:  # room for the OS, page cache and the data loader
        return False, f"{host} GiB host memory < ~{need.host_gb + 8:.0f} GiB needed"
    fp8_only = not needs(fp8_base=False, **kwargs).gpu_gb <= inst.vram_gb
    return True, "fp8 base only" if fp8_only else "fp8 or bf16 base"


def instance_choices(fp8_base: bool = True, **kwargs) -> list[tuple[str, str]]:
    """(label, value) for the instance types that fit FLUX.1 with these settings, each with its price."""
    out = []
    for inst in instances.CATALOGUE:
        ok, note = fit(inst, fp8_base, **kwargs)
        if ok:
            out.append((f"{inst.describe()} · FLUX.1: {note}", inst.name))
    return out


def memory_table(width: int = 1024, height: int = 1024) -> list[dict]:
    """Every catalogue instance with the FLUX.1 verdict for an fp8 and a bf16 base (the table in docs/flux.md)."""
    rows = []
    for inst in instances.CATALOGUE:
        if inst.is_local:
            continue
        rows.append({"instance": inst.name, "gpu": f"{inst.gpu} {inst.vram_gb} GB",
                     "host_gib": HOST_GIB.get(inst.name), "price": inst.price_per_hour,
                     "fp8": fit(inst, True, width=width, height=height),
                     "bf16": fit(inst, False, width=width, height=height)})
    return rows


def check_job(spec) -> list[str]:
    """The FLUX.1 checks before a job is submitted (UserError naming the fix); returns warnings."""
    from .. import host
    from ..errors import UserError
    from .results.config_values import flatten, parse_resolution

    ok, why = offered(host.current().name)
    if not ok:
        raise UserError(f"FLUX.1 training is not offered here: {why}", "Open Forge or run `cloudlora ui`.")
    if spec.container != "cloudlora":
        raise UserError("The Kohya sample container cannot train FLUX.1 LoRAs.",
                        "Use the Cloud LoRA trainer image (container 'cloudlora').")
    config = flatten(spec.config)
    fp8 = bool(config.get("fp8_base", True))
    w, h = parse_resolution(config.get("resolution") or "1024,1024", "flux")
    kwargs = dict(width=w, height=h, batch=max(1, int(config.get("train_batch_size") or 1)),
                  rank=int(config.get("network_dim") or 16), t5_tokens=int(config.get("t5xxl_max_token_length") or 512),
                  gradient_checkpointing=bool(config.get("gradient_checkpointing", True)))
    warnings = []
    if spec.backend == "sagemaker":
        inst = instances.get(spec.instance_type)
        if inst is not None:
            fits, note = fit(inst, fp8, **kwargs)
            if not fits:
                names = ", ".join(v for _label, v in instance_choices(fp8, **kwargs) if v != instances.LOCAL)
                raise UserError(f"{spec.instance_type} cannot train this FLUX.1 config: {note}.",
                                f"Pick one of: {names or 'none in the list'}; or set fp8_base = true, a lower "
                                "resolution or train_batch_size = 1.")
    else:
        warnings.append(f"FLUX.1 on this machine needs {needs(fp8_base=fp8, **kwargs).text()}.")
    return warnings
