"""Loads a FLUX.1 base model for training, offline, from the layouts users have.

- The transformer: a Black Forest Labs single file (`flux1-dev.safetensors`: bare `double_blocks...` keys), an
  all-in-one file as Forge and ComfyUI save them (`model.diffusion_model.` + `text_encoders.clip_l.transformer.` +
  `text_encoders.t5xxl.transformer.` + `vae.`, often fp8), a diffusers-named transformer file, or a diffusers folder
  (model_index.json, transformer/, text_encoder/, text_encoder_2/, vae/). diffusers names are converted to BFL's
  (sd-scripts library/flux_utils.py convert_diffusers_sd_to_bfl), so training always runs on the BFL layout.
- CLIP-L, T5-XXL and the 16-channel AE from the main file when it holds them, else from separate files (the job's
  clip_l / t5xxl / ae channels), as sd-scripts' --clip_l / --t5xxl / --ae take them.

Tensors are read one at a time (safetensors' safe_open) and converted to their final dtype and device, then assigned
into models built on the meta device, so host memory never holds a second copy: a 23.8 GB bf16 flux1-dev file can
be loaded straight into an fp8 transformer on a 32 GB machine. The architecture comes from the shapes; the shipped
configs in arch/ (FLUX.1-dev's and the tiny test one) add what shapes cannot tell (rope axes, T5/CLIP settings).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping

import torch

from ..model.family import NotSafetensorsError, read_safetensors_header
from ..model.load import Components, ModelLoadError
from ..model import flux_keys as K
from .model import FP8, Flux, FluxParams

ARCH_ROOT = Path(__file__).resolve().parent / "arch"
ARCHES = ("flux-dev", "flux-tiny")


def arch_config(arch: str, sub: str) -> dict:
    name = "scheduler_config.json" if sub == "scheduler" else "config.json"
    return json.loads((ARCH_ROOT / arch / sub / name).read_text(encoding="utf-8"))


def _arch_for_width(sub: str, width_key: str, width: int) -> str | None:
    for arch in ARCHES:
        if int(arch_config(arch, sub)[width_key]) == int(width):
            return arch
    return None


def _header(path: Path, what: str) -> dict:
    if path.suffix.lower() != ".safetensors":
        raise ModelLoadError(f"the {what} {path} is not a .safetensors file; FLUX.1 files are distributed as "
                             ".safetensors (convert other formats with a tool you trust).")
    try:
        return read_safetensors_header(path)
    except NotSafetensorsError as err:
        raise ModelLoadError(str(err)) from err


def _read(path: Path | list[Path], names: Mapping[str, str], dtype_for, device) -> dict[str, torch.Tensor]:
    """{new name: tensor} for {file key: new name}, each converted on the fly (one tensor in flight at a time).

    path: one file, or the shards of one model (each key is read from the shard that has it)."""
    from safetensors import safe_open

    out = {}
    for one in ([path] if isinstance(path, Path) else path):
        with safe_open(str(one), framework="pt", device="cpu") as f:
            for src in f.keys():
                if src in names:
                    t = f.get_tensor(src)
                    out[names[src]] = t.to(device=device, dtype=dtype_for(names[src], t))
                    del t
    return out


def _float_dtype(dtype):
    return lambda _name, t: dtype if t.is_floating_point() else t.dtype


class Sources:
    """Where each part's tensors are: (file, key root, {key without root: shape})."""

    def __init__(self, model: Path, parts: Mapping[str, Path | None]):
        self.model = model
        header = _header(model, "base model")
        shapes = K.shapes_of(header)
        if any(k.endswith(("scale_weight", "scaled_fp8")) for k in shapes):
            raise ModelLoadError(f"{model} is a 'scaled fp8' checkpoint (per-tensor scales), which is not supported; "
                                 "use the bf16/fp16 release or a plain fp8 (e4m3fn) file.")
        self.naming, root, tkeys = K.find_transformer(shapes)
        if not self.naming:
            raise ModelLoadError(f"{model} holds no FLUX.1 transformer (no double_blocks / transformer_blocks keys).")
        self.found: dict[str, tuple[Path, str, dict]] = {"transformer": (model, root, tkeys)}
        for part in K.PARTS[1:]:
            given = parts.get(part)
            if given:
                given = Path(given)
                p_root, p_keys = K.find_part(K.shapes_of(_header(given, K.PART_LABELS[part])), part)
                if p_root is None:
                    raise ModelLoadError(f"{given} was given as the {K.PART_LABELS[part]} but holds none "
                                         f"(its keys are not {part}'s).")
                self.found[part] = (given, p_root, p_keys)
                continue
            p_root, p_keys = K.find_part(shapes, part)
            if p_root is not None:
                self.found[part] = (model, p_root, p_keys)
        missing = [K.PART_LABELS[p] for p in K.PARTS if p not in self.found]
        if missing:
            raise ModelLoadError(
                f"{model.name} holds the FLUX transformer but not the {', '.join(missing)}. Give them as separate "
                "files (upload the model with --clip-l, --t5xxl and --ae, e.g. clip_l.safetensors, "
                "t5xxl_fp16.safetensors and ae.safetensors), or use an all-in-one checkpoint.")


def _transformer_names(naming: str, root: str, tkeys: Mapping[str, tuple]) -> tuple[dict, dict]:
    """({file key: BFL key} for single-source keys, {BFL key: [(position, file key)]} for concatenated ones)."""
    if naming == "bfl":
        return {root + k: k for k in tkeys}, {}
    depth, single = K.diffusers_depths(tkeys)
    mapping = K.diffusers_to_bfl_map(depth, single)
    unknown = [k for k in tkeys if k not in mapping]
    if unknown:
        raise ModelLoadError(f"the diffusers FLUX transformer has keys this loader does not know (e.g. {unknown[0]}).")
    groups: dict[str, list] = {}
    for k in tkeys:
        bfl, pos = mapping[k]
        groups.setdefault(bfl, []).append((pos, root + k))
    return {}, groups


def flux_params(bfl_shapes: Mapping[str, tuple]) -> tuple[FluxParams, str]:
    """The architecture from the transformer's shapes, and the shipped config folder whose widths it has."""
    try:
        a = K.architecture(bfl_shapes)
    except ValueError as err:
        raise ModelLoadError(f"this is not a complete FLUX transformer: {err}") from err
    arch = _arch_for_width("transformer", "joint_attention_dim", a.context_in_dim)
    head_dim = a.hidden_size // a.num_heads
    if arch is not None and int(arch_config(arch, "transformer")["attention_head_dim"]) == head_dim:
        axes = tuple(arch_config(arch, "transformer")["axes_dims_rope"])
    elif head_dim == 128:
        arch, axes = "flux-dev", (16, 56, 56)
    else:
        raise ModelLoadError(f"a FLUX transformer with {head_dim}-wide heads matches neither FLUX.1 nor the tiny test "
                             "architecture.")
    return FluxParams(in_channels=a.in_channels, vec_in_dim=a.vec_in_dim, context_in_dim=a.context_in_dim,
                      hidden_size=a.hidden_size, mlp_ratio=a.mlp_ratio, num_heads=a.num_heads, depth=a.depth,
                      depth_single_blocks=a.depth_single_blocks, axes_dim=axes, qkv_bias=a.qkv_bias,
                      guidance_embed=a.guidance_embed), arch


def _bfl_shapes(naming: str, tkeys: Mapping[str, tuple]) -> dict[str, tuple]:
    if naming == "bfl":
        return dict(tkeys)
    depth, single = K.diffusers_depths(tkeys)
    mapping = K.diffusers_to_bfl_map(depth, single)
    out: dict[str, list] = {}
    for k, shape in tkeys.items():
        bfl, _pos = mapping.get(k, (None, 0))
        if bfl is not None:
            total = out.setdefault(bfl, [0, *shape[1:]])
            total[0] += shape[0]
    return {k: tuple(v) for k, v in out.items()}


def load_transformer(path: Path | list[Path], naming: str, root: str, tkeys: Mapping[str, tuple], *,
                     compute_dtype: torch.dtype, storage_dtype: torch.dtype | None = None,
                     device="cpu") -> tuple[Flux, str]:
    """The BFL-layout transformer. Linear weights are stored as storage_dtype (default compute_dtype, fp8 for an fp8
    base), every other tensor as compute_dtype. Returns (model, shipped arch name)."""
    params, arch = flux_params(_bfl_shapes(naming, tkeys))
    storage = storage_dtype or compute_dtype

    def dtype_for(name: str, t: torch.Tensor):
        if not t.is_floating_point():
            return t.dtype
        return storage if name.endswith(".weight") else compute_dtype

    direct, groups = _transformer_names(naming, root, tkeys)
    state = _read(path, direct, dtype_for, device) if direct else {}
    if groups:
        flat = {src: f"{bfl}#{pos}" for bfl, items in groups.items() for pos, src in items}
        raw = _read(path, flat, lambda _n, t: t.dtype, "cpu")
        for bfl, items in groups.items():
            t = torch.cat([raw.pop(f"{bfl}#{pos}") for pos, _src in sorted(items)], dim=0)
            if bfl in K.SWAPPED_HALVES:  # diffusers' AdaLayerNormContinuous is (shift, scale); BFL's (scale, shift)
                shift, scale = t.chunk(2, dim=0)
                t = torch.cat([scale, shift], dim=0)
            state[bfl] = t.to(device=device, dtype=dtype_for(bfl, t))
    with torch.device("meta"):
        model = Flux(params)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        raise ModelLoadError(f"{path} does not fit the FLUX architecture its shapes imply: "
                             f"{str(err).splitlines()[0]}") from err
    return model, arch


def _load_clip(path: Path, root: str, pkeys: Mapping[str, tuple], dtype, device):
    from accelerate import init_empty_weights
    from transformers import CLIPTextConfig, CLIPTextModel

    width_key = next((k for k in pkeys if k.endswith("embeddings.token_embedding.weight")), None)
    if width_key is None:
        raise ModelLoadError(f"the CLIP-L text encoder in {path} has no token embedding: a damaged or pruned file?")
    arch = _arch_for_width("text_encoder", "hidden_size", pkeys[width_key][1])
    if arch is None:
        raise ModelLoadError(f"the CLIP-L text encoder in {path} is {pkeys[width_key][1]} wide: it is not CLIP-L.")
    with init_empty_weights():
        model = CLIPTextModel(CLIPTextConfig.from_dict(arch_config(arch, "text_encoder")))
    wanted = set(model.state_dict())
    prefixed = any(k.startswith("text_model.") for k in wanted)  # transformers >= 5.6 dropped the wrapper

    def own(key: str) -> str:
        bare = key[len("text_model."):] if key.startswith("text_model.") else key
        return "text_model." + bare if prefixed else bare

    names = {root + k: own(k) for k in pkeys if own(k) in wanted}
    state = _read(path, names, _float_dtype(dtype), device)
    _assign(model, state, "CLIP-L text encoder", path)
    return model


def _load_t5(path: Path, root: str, pkeys: Mapping[str, tuple], dtype, device):
    from accelerate import init_empty_weights
    from transformers import T5Config, T5EncoderModel

    arch = _arch_for_width("text_encoder_2", "d_model", pkeys["shared.weight"][1] if "shared.weight" in pkeys
                           else pkeys["encoder.block.0.layer.0.SelfAttention.q.weight"][1])
    if arch is None:
        raise ModelLoadError(f"the T5 text encoder in {path} has a width of neither T5-XXL nor the tiny test model.")
    with init_empty_weights():
        model = T5EncoderModel(T5Config.from_dict(arch_config(arch, "text_encoder_2")))
    wanted = set(model.state_dict())
    names = {root + k: k for k in pkeys if k in wanted}
    state = _read(path, names, _float_dtype(dtype), device)
    # shared and encoder.embed_tokens are one tied matrix; files carry either name (or both).
    embed = state.get("shared.weight", state.get("encoder.embed_tokens.weight"))
    if embed is not None:
        state.setdefault("shared.weight", embed)
        state.setdefault("encoder.embed_tokens.weight", embed)
    _assign(model, state, "T5-XXL text encoder", path)
    return model


def _assign(model, state: dict, what: str, path: Path) -> None:
    model.load_state_dict(state, strict=False, assign=True)
    missing = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.device.type == "meta"]
    if missing:
        raise ModelLoadError(f"{path} is missing {len(missing)} tensors of the {what} (e.g. {missing[0]}): a pruned or "
                             "damaged file?")


def _load_ae(path: Path, root: str, pkeys: Mapping[str, tuple], dtype, device):
    from diffusers import AutoencoderKL

    arch = None
    for name in ARCHES:
        cfg = arch_config(name, "vae")
        if pkeys.get("encoder.conv_in.weight", (0,))[0] == cfg["block_out_channels"][0]:
            arch = name
    if arch is None:
        raise ModelLoadError(f"the autoencoder in {path} matches neither FLUX.1's AE nor the tiny test one.")
    state = _read(path, {root + k: k for k in pkeys}, _float_dtype(dtype), "cpu")
    folder = ARCH_ROOT / arch
    try:
        if any(k.startswith("encoder.down_blocks.") for k in state):  # diffusers naming
            with torch.device("meta"):
                vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
            vae.load_state_dict(state, strict=True, assign=True)
        else:
            from ..model.load import quiet_cast_warning

            with quiet_cast_warning():
                vae = AutoencoderKL.from_single_file(state, config=str(folder), subfolder="vae",
                                                     local_files_only=True, torch_dtype=dtype)
    except Exception as err:  # noqa: BLE001 - diffusers raises KeyError/ValueError/RuntimeError
        raise ModelLoadError(f"the autoencoder in {path} could not be read as FLUX.1's AE: {err}") from err
    return vae.to(device)


def load_flux(model_path: Path | str, parts: Mapping[str, Path | str | None] | None = None, *,
              dtype: torch.dtype = torch.float32, transformer_storage: torch.dtype | None = None,
              device="cpu", transformer_device="cpu", tokenizer_cache=None) -> Components:
    """Transformer, CLIP-L, T5-XXL, AE and tokenizers of a FLUX.1 base model, offline, frozen, in eval mode.

    dtype: compute dtype for every model (bf16 on a GPU, fp32 on CPU); transformer_storage: the transformer's Linear
    weights' dtype (torch.float8_e4m3fn for an fp8 base). The transformer goes to transformer_device ("auto": the GPU
    when it fits beside the encoders, else the CPU until the trainer moves it), everything else to device."""
    path = Path(model_path)
    if not path.exists():
        raise ModelLoadError(f"the base model {path} does not exist.")
    if transformer_storage is not None and transformer_storage == FP8 and FP8 is None:
        raise ModelLoadError("this torch has no float8_e4m3fn: fp8_base needs torch >= 2.1.")
    if path.is_dir():
        return _load_diffusers_folder(path, dtype=dtype, transformer_storage=transformer_storage, device=device,
                                      transformer_device=transformer_device, tokenizer_cache=tokenizer_cache)
    src = Sources(path, {k: v for k, v in (parts or {}).items() if v})
    t_path, t_root, t_keys = src.found["transformer"]
    if transformer_device == "auto":
        transformer_device = _transformer_device(src, device, dtype, transformer_storage or dtype)
    transformer, arch = load_transformer(t_path, src.naming, t_root, t_keys, compute_dtype=dtype,
                                         storage_dtype=transformer_storage, device=transformer_device)
    clip = _load_clip(*src.found["clip_l"], dtype, device)
    t5 = _load_t5(*src.found["t5xxl"], dtype, device)
    ae = _load_ae(*src.found["ae"], torch.float32 if dtype == torch.float16 else dtype, device)
    from .tokenizer import flux_tokenizers

    return _components(path, arch, transformer, ae, [clip, t5], flux_tokenizers(tokenizer_cache),
                       {p: str(v[0]) for p, v in src.found.items()})


def _transformer_device(src: Sources, device, dtype, storage) -> str | torch.device:
    """The GPU when the transformer fits there beside the text encoders and AE (with 4 GiB to spare), else the CPU,
    where it waits until the encoders are done (a 24 GB card cannot hold an fp8 FLUX.1 and T5-XXL at once)."""
    device = torch.device(device)
    if device.type != "cuda":
        return "cpu"

    def size(part: str, item: int) -> int:
        return sum(math.prod(shape) for shape in src.found[part][2].values()) * item

    need = size("transformer", torch.finfo(storage).bits // 8) + sum(
        size(p, torch.finfo(dtype).bits // 8) for p in ("clip_l", "t5xxl", "ae")) + (4 << 30)
    return device if need < torch.cuda.get_device_properties(device).total_memory else "cpu"


def _load_diffusers_folder(path: Path, *, dtype, transformer_storage, device, transformer_device, tokenizer_cache):
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, T5EncoderModel

    index = {}
    try:
        index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    files = sorted((path / "transformer").glob("*.safetensors"))
    if "Flux" not in str(index.get("_class_name", "")) or not files:
        raise ModelLoadError(f"{path} is not a diffusers FLUX.1 folder (model_index.json names "
                             f"{index.get('_class_name') or 'nothing'}; transformer/ holds {len(files)} safetensors).")
    transformer, arch = _load_sharded_transformer(files, dtype, transformer_storage,
                                                  "cpu" if transformer_device == "auto" else transformer_device)
    import transformers

    dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    try:
        clip = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", local_files_only=True, **{dtype_kw: dtype})
        t5 = T5EncoderModel.from_pretrained(path, subfolder="text_encoder_2", local_files_only=True,
                                            **{dtype_kw: dtype})
        ae = AutoencoderKL.from_pretrained(path, subfolder="vae", local_files_only=True, torch_dtype=dtype)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{path} is not a complete diffusers FLUX.1 folder: {err}") from err
    if (path / "tokenizer_2").is_dir() and (path / "tokenizer").is_dir():
        from transformers import AutoTokenizer, CLIPTokenizer

        tokenizers = [CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", local_files_only=True),
                      AutoTokenizer.from_pretrained(path, subfolder="tokenizer_2", local_files_only=True)]
    else:
        from .tokenizer import flux_tokenizers

        tokenizers = flux_tokenizers(tokenizer_cache)
    return _components(path, arch, transformer, ae.to(device), [clip.to(device), t5.to(device)], tokenizers,
                       {"transformer": str(path / "transformer")})


def _load_sharded_transformer(files: list[Path], dtype, storage, device) -> tuple[Flux, str]:
    """A diffusers transformer in one file or several shards (diffusion_pytorch_model-0000N-of-0000M)."""
    all_keys = {k: v for f in files for k, v in K.shapes_of(_header(f, "transformer shard")).items()}
    naming, root, tkeys = K.find_transformer(all_keys)
    if naming != "diffusers":
        raise ModelLoadError(f"{files[0].parent} holds no diffusers FLUX transformer weights.")
    return load_transformer(files, naming, root, tkeys, compute_dtype=dtype, storage_dtype=storage, device=device)


def _components(path: Path, arch: str, transformer, ae, encoders, tokenizers, sources: dict) -> Components:
    for m in [transformer, ae, *encoders]:
        m.requires_grad_(False)
        m.eval()
    return Components(
        family="flux", unet=transformer, vae=ae, text_encoders=encoders, tokenizers=tokenizers,
        noise_scheduler=None, prediction_type="flow", model_path=str(path), model_name=path.name,
        config_dir=str(ARCH_ROOT / arch), tiny=arch.endswith("-tiny"),
        extra={"variant": "dev" if transformer.params.guidance_embed else "schnell", "sources": sources},
    )
