"""FLUX.1 key layouts, read from names and shapes alone (pure Python: the WebUI side imports it without torch).

- Which parts a .safetensors file holds: the transformer in Black Forest Labs' layout (`double_blocks.N...`, bare as
  in flux1-dev.safetensors or under `model.diffusion_model.` as in all-in-one files), the transformer in diffusers'
  naming (`transformer_blocks.N.attn...`), CLIP-L (`text_model...`), T5-XXL (`encoder.block...`) and the 16-channel
  autoencoder (`encoder.down...` / `decoder...`). All-in-one files as Forge and ComfyUI save them put the text
  encoders under `text_encoders.clip_l.transformer.` / `text_encoders.t5xxl.transformer.` and the AE under `vae.`
  (Forge backend/loader.py, ComfyUI supported_models.Flux).
- The architecture a transformer's shapes imply (width, heads, depth, dev or schnell).
- The Kohya LoRA module set of sd-scripts' networks/lora_flux.py: every Linear inside the double and single blocks,
  named `lora_unet_` + the BFL module path with `.` -> `_` (10 per double block, 3 per single block: 304 for
  FLUX.1's 19 + 38 blocks), and the check that each LoRA key lands on a weight of the BFL layout with the right
  shape, the way Forge and ComfyUI resolve them (comfy/lora.py model_lora_keys_unet: `lora_unet_` + the state-dict
  key without `diffusion_model.` and `.weight`, dots to underscores).
- diffusers -> BFL names for the transformer (sd-scripts library/flux_utils.py BFL_TO_DIFFUSERS_MAP).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

TRANSFORMER_ROOT = "model.diffusion_model."
PART_ROOTS = {"clip_l": "text_encoders.clip_l.transformer.", "t5xxl": "text_encoders.t5xxl.transformer.",
              "ae": "vae."}
PARTS = ("transformer", "clip_l", "t5xxl", "ae")
PART_LABELS = {"transformer": "FLUX transformer", "clip_l": "CLIP-L text encoder", "t5xxl": "T5-XXL text encoder",
               "ae": "autoencoder (AE/VAE)"}
PART_FILES = {"clip_l": "clip_l.safetensors", "t5xxl": "t5xxl_fp16.safetensors", "ae": "ae.safetensors"}

_BFL_PROBE = "double_blocks.0.img_attn.qkv.weight"
_DIFFUSERS_PROBE = "transformer_blocks.0.attn.add_k_proj.weight"
_CLIP_PROBES = ("text_model.encoder.layers.0.self_attn.q_proj.weight", "encoder.layers.0.self_attn.q_proj.weight")
_T5_PROBE = "encoder.block.0.layer.0.SelfAttention.q.weight"
_AE_PROBE = "decoder.conv_in.weight"
AE_LATENT_CHANNELS = 16

DOUBLE_TARGETS = ("img_mod.lin", "img_attn.qkv", "img_attn.proj", "img_mlp.0", "img_mlp.2",
                  "txt_mod.lin", "txt_attn.qkv", "txt_attn.proj", "txt_mlp.0", "txt_mlp.2")
SINGLE_TARGETS = ("linear1", "linear2", "modulation.lin")
LORA_PREFIX = "lora_unet_"
FLUX1_BLOCKS = (19, 38)


def shapes_of(header: Mapping) -> dict[str, tuple[int, ...]]:
    """{key: shape} from a safetensors header (or a {key: shape} mapping), without "__metadata__"."""
    out = {}
    for key, value in header.items():
        if key == "__metadata__":
            continue
        shape = value.get("shape", ()) if isinstance(value, Mapping) else getattr(value, "shape", value)
        out[key] = tuple(int(s) for s in shape)
    return out


def dtypes_of(header: Mapping) -> dict[str, str]:
    return {k: v.get("dtype", "") for k, v in header.items() if k != "__metadata__" and isinstance(v, Mapping)}


def strip(shapes: Mapping[str, tuple], root: str) -> dict[str, tuple]:
    return {k[len(root):]: v for k, v in shapes.items() if k.startswith(root)}


def transformer_keys(shapes: Mapping[str, tuple]) -> tuple[str, dict[str, tuple]]:
    """("bfl" | "diffusers" | "", the transformer's keys without their root) of a file's keys."""
    kind, _root, keys = find_transformer(shapes)
    return kind, keys


def find_transformer(shapes: Mapping[str, tuple]) -> tuple[str, str, dict[str, tuple]]:
    """(naming "bfl" | "diffusers" | "", key root, {key without root: shape}) of the transformer in a file."""
    for root in (TRANSFORMER_ROOT, ""):
        sub = strip(shapes, root) if root else dict(shapes)
        if _BFL_PROBE in sub:
            return "bfl", root, {k: v for k, v in sub.items() if k.split(".")[0] in BFL_TOP_LEVEL}
        if _DIFFUSERS_PROBE in sub and any(k.startswith("single_transformer_blocks.") for k in sub):
            return "diffusers", root, {k: v for k, v in sub.items() if k.split(".")[0] in DIFFUSERS_TOP_LEVEL}
    return "", "", {}


_PART_KEY_STARTS = {"clip_l": ("text_model.", "encoder.", "embeddings.", "final_layer_norm.", "text_projection."),
                    "t5xxl": ("encoder.", "shared."),
                    "ae": ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")}


def find_part(shapes: Mapping[str, tuple], part: str) -> tuple[str | None, dict[str, tuple]]:
    """(key root, {key without root: shape}) of one text encoder / the AE in a file; (None, {}) when absent.

    The root is the all-in-one one (`text_encoders.clip_l.transformer.`, ...) or "" for a file of that part alone."""
    for root in (PART_ROOTS[part], ""):
        sub = strip(shapes, root) if root else dict(shapes)
        if part == "clip_l":
            found = any(p in sub for p in _CLIP_PROBES)
        elif part == "t5xxl":
            found = _T5_PROBE in sub
        else:
            found = _AE_PROBE in sub and len(sub[_AE_PROBE]) == 4 and sub[_AE_PROBE][1] == AE_LATENT_CHANNELS
        if found:
            return root, {k: v for k, v in sub.items() if k.startswith(_PART_KEY_STARTS[part])}
    return None, {}


def part_keys(shapes: Mapping[str, tuple], part: str) -> dict[str, tuple]:
    return find_part(shapes, part)[1]


def parts_in(header_or_shapes: Mapping) -> list[str]:
    """Which of transformer / clip_l / t5xxl / ae a file holds, in PARTS order."""
    shapes = shapes_of(header_or_shapes)
    found = ["transformer"] if transformer_keys(shapes)[0] else []
    return found + [p for p in PARTS[1:] if part_keys(shapes, p)]


def is_flux(header_or_shapes: Mapping) -> bool:
    """A FLUX.1 checkpoint: it holds the transformer (alone, or with the encoders and AE)."""
    return "transformer" in parts_in(header_or_shapes)


def part_of_file(header_or_shapes: Mapping) -> str | None:
    """What a single-part file is (for uploads of separate encoders / AE): one of PARTS, or None."""
    found = parts_in(header_or_shapes)
    return found[0] if len(found) == 1 else None


# --- the architecture a BFL transformer implies

@dataclass(frozen=True)
class Architecture:
    hidden_size: int
    num_heads: int
    depth: int
    depth_single_blocks: int
    in_channels: int
    vec_in_dim: int
    context_in_dim: int
    mlp_ratio: float
    guidance_embed: bool
    qkv_bias: bool

    @property
    def variant(self) -> str:
        return "dev" if self.guidance_embed else "schnell"


def architecture(bfl: Mapping[str, tuple]) -> Architecture:
    """From BFL-layout transformer keys (root removed). Raises ValueError naming the missing key."""
    def shape(key: str) -> tuple:
        if key not in bfl:
            raise ValueError(f"the FLUX transformer has no {key}")
        return bfl[key]

    hidden, in_channels = shape("img_in.weight")
    head_dim = shape("double_blocks.0.img_attn.norm.query_norm.scale")[0]
    return Architecture(
        hidden_size=hidden, num_heads=hidden // head_dim,
        depth=1 + max(int(k.split(".")[1]) for k in bfl if k.startswith("double_blocks.")),
        depth_single_blocks=1 + max(int(k.split(".")[1]) for k in bfl if k.startswith("single_blocks.")),
        in_channels=in_channels, vec_in_dim=shape("vector_in.in_layer.weight")[1],
        context_in_dim=shape("txt_in.weight")[1], mlp_ratio=shape("double_blocks.0.img_mlp.0.weight")[0] / hidden,
        guidance_embed="guidance_in.in_layer.weight" in bfl,
        qkv_bias="double_blocks.0.img_attn.qkv.bias" in bfl,
    )


# --- the Kohya LoRA module set (sd-scripts networks/lora_flux.py, default network_args)

def lora_targets(depth: int = FLUX1_BLOCKS[0], depth_single: int = FLUX1_BLOCKS[1]) -> list[str]:
    """BFL module paths that carry a LoRA: every Linear inside DoubleStreamBlock and SingleStreamBlock."""
    return ([f"double_blocks.{i}.{t}" for i in range(depth) for t in DOUBLE_TARGETS]
            + [f"single_blocks.{i}.{t}" for i in range(depth_single) for t in SINGLE_TARGETS])


def kohya_name(module_path: str) -> str:
    return LORA_PREFIX + module_path.replace(".", "_")


@dataclass
class Resolution:
    """How a LoRA's keys land on a BFL-layout transformer."""
    modules: dict[str, str] = field(default_factory=dict)  # Kohya module name -> BFL weight key
    unresolved: list[str] = field(default_factory=list)  # LoRA keys that name no layer of the model
    wrong_shape: list[str] = field(default_factory=list)  # keys whose shapes do not fit their layer

    @property
    def ok(self) -> bool:
        return not self.unresolved and not self.wrong_shape


def resolve_lora(lora_shapes: Mapping[str, tuple], model_shapes: Mapping[str, tuple]) -> Resolution:
    """Maps every key of a Kohya Flux LoRA onto the weights of a BFL-layout transformer (any root).

    Forge and ComfyUI build the same map: for each model weight `K.weight`, the LoRA module `lora_unet_` +
    K with `.` -> `_`. A LoRA module resolves when its lora_down is (rank, in) and lora_up (out, rank) of that
    weight's (out, in), and its alpha is a scalar."""
    kind, bfl = transformer_keys(shapes_of(model_shapes))
    if kind != "bfl":
        raise ValueError("the model's keys are not a BFL-layout FLUX transformer")
    by_name = {kohya_name(k[: -len(".weight")]): k for k in bfl if k.endswith(".weight")}
    res = Resolution()
    lora = shapes_of(lora_shapes)
    for key, shape in sorted(lora.items()):
        module, _, suffix = key.partition(".")
        target = by_name.get(module)
        if target is None or suffix not in ("lora_down.weight", "lora_up.weight", "alpha"):
            res.unresolved.append(key)
            continue
        out_dim, in_dim = bfl[target][:2]
        rank = lora.get(f"{module}.lora_down.weight", (0,))[0]
        expected = {"lora_down.weight": (rank, in_dim), "lora_up.weight": (out_dim, rank), "alpha": ()}[suffix]
        if tuple(shape) != expected:
            res.wrong_shape.append(f"{key} {tuple(shape)} (the layer {target} needs {expected})")
            continue
        res.modules[module] = target
    return res


# --- diffusers FluxTransformer2DModel -> BFL (sd-scripts library/flux_utils.py BFL_TO_DIFFUSERS_MAP, reversed)

BFL_TOP_LEVEL = {"img_in", "time_in", "vector_in", "guidance_in", "txt_in", "double_blocks", "single_blocks",
                 "final_layer"}
DIFFUSERS_TOP_LEVEL = {"x_embedder", "time_text_embed", "context_embedder", "transformer_blocks",
                       "single_transformer_blocks", "norm_out", "proj_out"}
_TOP = {
    "time_in.in_layer": ["time_text_embed.timestep_embedder.linear_1"],
    "time_in.out_layer": ["time_text_embed.timestep_embedder.linear_2"],
    "vector_in.in_layer": ["time_text_embed.text_embedder.linear_1"],
    "vector_in.out_layer": ["time_text_embed.text_embedder.linear_2"],
    "guidance_in.in_layer": ["time_text_embed.guidance_embedder.linear_1"],
    "guidance_in.out_layer": ["time_text_embed.guidance_embedder.linear_2"],
    "txt_in": ["context_embedder"], "img_in": ["x_embedder"],
    "final_layer.linear": ["proj_out"],
    "final_layer.adaLN_modulation.1": ["norm_out.linear"],  # (shift, scale) in diffusers, (scale, shift) in BFL
}
_DOUBLE = {
    "img_mod.lin": ["norm1.linear"], "txt_mod.lin": ["norm1_context.linear"],
    "img_attn.qkv": ["attn.to_q", "attn.to_k", "attn.to_v"],
    "txt_attn.qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"],
    "img_attn.norm.query_norm": ["attn.norm_q"], "img_attn.norm.key_norm": ["attn.norm_k"],
    "txt_attn.norm.query_norm": ["attn.norm_added_q"], "txt_attn.norm.key_norm": ["attn.norm_added_k"],
    "img_mlp.0": ["ff.net.0.proj"], "img_mlp.2": ["ff.net.2"],
    "txt_mlp.0": ["ff_context.net.0.proj"], "txt_mlp.2": ["ff_context.net.2"],
    "img_attn.proj": ["attn.to_out.0"], "txt_attn.proj": ["attn.to_add_out"],
}
_SINGLE = {
    "modulation.lin": ["norm.linear"],
    "linear1": ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"],
    "linear2": ["proj_out"],
    "norm.query_norm": ["attn.norm_q"], "norm.key_norm": ["attn.norm_k"],
}
SWAPPED_HALVES = {"final_layer.adaLN_modulation.1.weight", "final_layer.adaLN_modulation.1.bias"}


def diffusers_to_bfl_map(depth: int, depth_single: int) -> dict[str, tuple[str, int]]:
    """{diffusers key: (BFL key, position in the BFL tensor's concatenation)} for weights, biases and norm scales."""
    out: dict[str, tuple[str, int]] = {}
    for bfl, diff in _TOP.items():
        out.update(_one(bfl, diff, ""))
    for b in range(depth):
        for bfl, diff in _DOUBLE.items():
            out.update((k, (f"double_blocks.{b}.{v}", i)) for k, (v, i) in _one(bfl, diff, f"transformer_blocks.{b}."))
    for b in range(depth_single):
        for bfl, diff in _SINGLE.items():
            out.update((k, (f"single_blocks.{b}.{v}", i))
                       for k, (v, i) in _one(bfl, diff, f"single_transformer_blocks.{b}."))
    return out


def _one(bfl_module: str, diffusers_modules: list[str], prefix: str):
    norm = bfl_module.endswith("_norm")
    for suffix in (("scale",) if norm else ("weight", "bias")):
        source_suffix = "weight" if norm else suffix
        for i, d in enumerate(diffusers_modules):
            yield f"{prefix}{d}.{source_suffix}", (f"{bfl_module}.{suffix}", i)


def diffusers_depths(keys) -> tuple[int, int]:
    depth = 1 + max(int(k.split(".")[1]) for k in keys if k.startswith("transformer_blocks."))
    single = 1 + max(int(k.split(".")[1]) for k in keys if k.startswith("single_transformer_blocks."))
    return depth, single
