"""Loads a base model for training, fully offline: an A1111 single file (.safetensors/.ckpt) or a diffusers folder.

Single files are read once (memory-mapped) and each component is converted with diffusers' own single-file
converters against the shipped configs in arch/ (full size or tiny, picked by tensor shapes), so nothing ever
touches the hub. The tokenizers are built from open_clip's BPE file (data/tokenizer.py).

Each component is built straight in the dtype and on the device it trains in: on a GPU the UNet's tensors go to the
GPU as they are in the file (fp16) and are cast there, so the CPU never converts the 2.6 B SDXL UNet weights and
never holds an fp32 copy of the model (the old path made one: fp16 file -> fp32 on the CPU -> GPU -> bf16).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import archs
from ..data.tokenizer import tokenizers_for

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
# The training noise schedule of SD1.5 and SDXL (REFERENCE §2).
NOISE_SCHEDULE = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                      clip_sample=False)


class ModelLoadError(ValueError):
    """The base model or VAE cannot be used; the message names the file and what is wrong with it."""


@dataclass
class Components:
    """Everything training and sampling need from the base model."""

    family: str  # "sd15" | "sdxl"
    unet: Any
    vae: Any
    text_encoders: list  # [CLIPTextModel] or [CLIPTextModel, CLIPTextModelWithProjection]
    tokenizers: list  # CLIPTokenizer per text encoder, same order
    noise_scheduler: Any  # DDPMScheduler for training
    prediction_type: str = "epsilon"
    model_path: str = ""
    model_name: str = ""  # the checkpoint's file (or folder) name, for ss_sd_model_name
    config_dir: str = ""  # the diffusers-format config folder the components were built from
    tiny: bool = False
    extra: dict = field(default_factory=dict)


def _detect_family(shapes: dict[str, tuple]) -> str:
    from .family import detect_family

    return detect_family(shapes)


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a single-file checkpoint: safetensors memory-mapped, pickles with weights_only=True."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # old (non-zip) pickles cannot be memory-mapped
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here means "not a checkpoint we can read"
        import pickle

        if isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in str(err):
            raise ModelLoadError(
                f"{path} holds Python objects besides tensors, so it is not loaded (unpickling could run code). "
                "Convert it to .safetensors with a tool you trust, or use the .safetensors release of the model."
            ) from err
        raise ModelLoadError(f"{path} could not be read as a checkpoint: {str(err).splitlines()[0]}") from err
    while isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} does not hold a state dict (found {type(data).__name__}).")
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


def _check_loaded(model, what: str, path: Path) -> None:
    missing = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.device.type == "meta"]
    if missing:
        raise ModelLoadError(
            f"{path} is missing {len(missing)} {what} tensors (e.g. {missing[0]}); it is not a complete "
            "checkpoint of this family (a pruned or UNet-only file?)."
        )


@contextlib.contextmanager
def quiet_cast_warning():
    """from_single_file casts with .to(dtype), and diffusers then warns about fp32 modules even when the list is
    empty: noise in every job log. Only that logger is silenced, only while loading."""
    import logging

    log = logging.getLogger("diffusers.models.modeling_utils")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _no_weight_init():
    """transformers' context that skips random weight init (its home moved between 4.x and 5.x)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights
        except ImportError:
            return contextlib.nullcontext()
    return no_init_weights()


# The A1111 key roots of each part (REFERENCE §2); a file without one of them cannot be trained on.
PART_ROOTS = {
    "sd15": {"UNet": "model.diffusion_model.", "VAE": "first_stage_model.",
             "text encoder": "cond_stage_model.transformer."},
    "sdxl": {"UNet": "model.diffusion_model.", "VAE": "first_stage_model.",
             "first text encoder (CLIP-L)": "conditioner.embedders.0.transformer.",
             "second text encoder (OpenCLIP bigG)": "conditioner.embedders.1.model."},
}


def _normalise_clip_keys(checkpoint: dict) -> dict:
    """Old SD1 checkpoints (saved with transformers < 4.x) lack CLIP's `text_model.` level: put it back."""
    for root in ("cond_stage_model.transformer.", "conditioner.embedders.0.transformer."):
        if any(k.startswith(root + "embeddings.") for k in checkpoint):
            checkpoint = {(root + "text_model." + k[len(root):] if k.startswith(root) and
                           not k.startswith(root + "text_model.") else k): v for k, v in checkpoint.items()}
    return checkpoint


def _missing_parts(family: str, keys, need_vae: bool) -> list[str]:
    present = {root for root in PART_ROOTS[family].values() if any(k.startswith(root) for k in keys)}
    return [part for part, root in PART_ROOTS[family].items()
            if root not in present and (need_vae or part != "VAE")]


def _stage(checkpoint: dict, root: str, device: torch.device, dtype: torch.dtype) -> None:
    """Puts the floating-point tensors under `root` on `device` in `dtype`, one tensor at a time, in place.

    Moved first, then cast: on a GPU the cast runs there. Already staged tensors make diffusers' own `.to(dtype)`
    and `.to(device)` no-ops, so the model's parameters are these very tensors (no second copy)."""
    for key in [k for k in checkpoint if k.startswith(root)]:
        value = checkpoint[key]
        if value.is_floating_point():
            checkpoint[key] = value.to(device).to(dtype)


def _load_single_file(path: Path, family: str | None, dtype: torch.dtype, need_vae: bool = True,
                      vae_dtype: torch.dtype | None = None, device: torch.device | None = None):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    checkpoint = _normalise_clip_keys(read_checkpoint(path))
    shapes = {k: tuple(v.shape) for k, v in checkpoint.items()}
    detected = _detect_family(shapes)
    if family and detected in archs.FAMILIES and detected != family:
        raise ModelLoadError(f"{path} is an {detected} checkpoint, not {family}: pick the {detected} family for it.")
    family = family or detected
    if family not in archs.FAMILIES:
        raise ModelLoadError(
            f"{path} is not an SD 1.5 or SDXL checkpoint (detected: {family}); only those two families can be trained."
        )
    conv_in = shapes.get("model.diffusion_model.input_blocks.0.0.weight")
    if conv_in is not None and len(conv_in) == 4 and conv_in[1] != 4:
        raise ModelLoadError(f"{path} takes {conv_in[1]} input channels, not 4: it is an inpainting (or other "
                             "special-purpose) model. Train the LoRA on the matching base model; it works on the "
                             "inpainting model too.")
    missing = _missing_parts(family, shapes, need_vae)
    if missing:
        raise ModelLoadError(
            f"{path} is missing the {', '.join(missing)} of an {family} checkpoint (a pruned or UNet-only file?)."
            + (" A checkpoint without a VAE can be used with a separate VAE file." if missing == ["VAE"] else "")
        )
    folder = archs.pick_arch_dir(family, shapes)
    if folder is None:
        raise ModelLoadError(f"{path} has {family} keys but layer widths that match neither the real {family} "
                             "architecture nor the tiny test one.")
    device = torch.device(device or "cpu")
    vae_dtype = vae_dtype or dtype
    roots = PART_ROOTS[family]
    _stage(checkpoint, roots["UNet"], device, dtype)
    _stage(checkpoint, roots["VAE"], device, vae_dtype)
    # diffusers builds text encoders on the CPU whatever the tensors' device: staged there, then moved once.
    for part, root in roots.items():
        if part not in ("UNet", "VAE"):
            _stage(checkpoint, root, torch.device("cpu"), dtype)
    common = dict(config=str(folder), local_files_only=True)
    classes = [("text_encoder", CLIPTextModel)]
    if family == "sdxl":
        classes.append(("text_encoder_2", CLIPTextModelWithProjection))
    try:
        with quiet_cast_warning():
            unet = UNet2DConditionModel.from_single_file(checkpoint, subfolder="unet", torch_dtype=dtype,
                                                         device=device, **common)
            vae = AutoencoderKL.from_single_file(checkpoint, subfolder="vae", torch_dtype=vae_dtype, device=device,
                                                 **common) if need_vae else None
        with _no_weight_init():  # every weight comes from the checkpoint: random init is wasted time
            encoders = [create_diffusers_clip_model_from_ldm(cls, checkpoint, subfolder=sub, torch_dtype=dtype,
                                                             **common).to(device)
                        for sub, cls in classes]
    except Exception as err:  # noqa: BLE001 - diffusers raises KeyError/ValueError/RuntimeError/its own errors
        raise ModelLoadError(f"{path} could not be converted as a {family} checkpoint: {err}") from err
    for model, what in [(unet, "UNet"), (vae, "VAE")] + [(e, "text encoder") for e in encoders]:
        if model is not None:
            _check_loaded(model, what, path)
    return family, folder, unet, vae, encoders


def _load_diffusers_folder(path: Path, family: str | None, dtype: torch.dtype, vae_dtype: torch.dtype | None = None,
                           device: torch.device | None = None):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from .family import detect_diffusers_folder

    detected = detect_diffusers_folder(path)
    if family and detected in archs.FAMILIES and detected != family:
        raise ModelLoadError(f"{path} is an {detected} model, not {family}: pick the {detected} family for it.")
    family = family or detected
    if family not in archs.FAMILIES:
        raise ModelLoadError(f"{path} is not an SD 1.5 or SDXL diffusers folder (detected: {family}).")
    common = dict(local_files_only=True, torch_dtype=dtype, low_cpu_mem_usage=True)
    try:
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **common)
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **{**common, "torch_dtype": vae_dtype or dtype})
        import transformers

        # transformers >= 4.56 names it `dtype`; older versions only know `torch_dtype`.
        dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        te_kwargs = {"local_files_only": True, dtype_kw: dtype}
        encoders = [CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **te_kwargs)]
        if family == "sdxl":
            encoders.append(CLIPTextModelWithProjection.from_pretrained(path, subfolder="text_encoder_2", **te_kwargs))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{path} is not a complete diffusers {family} folder: {err}") from err
    if device is not None:
        for model in [unet, vae, *encoders]:
            model.to(device)
    return family, path, unet, vae, encoders


def load_vae(vae_path: Path | str, config_dir: Path, dtype: torch.dtype = torch.float32):
    """A separate VAE: an A1111/LDM .safetensors/.ckpt, a diffusers-format VAE file, or a diffusers VAE folder."""
    from diffusers import AutoencoderKL

    vae_path = Path(vae_path)
    if not vae_path.exists():
        raise ModelLoadError(f"the VAE {vae_path} does not exist.")
    if vae_path.is_dir():
        sub = "vae" if (vae_path / "vae" / "config.json").is_file() else None
        return AutoencoderKL.from_pretrained(vae_path, subfolder=sub, local_files_only=True, torch_dtype=dtype)
    state = read_checkpoint(vae_path)
    if not any(k.startswith(("encoder.", "decoder.", "first_stage_model.")) for k in state):
        raise ModelLoadError(f"the VAE {vae_path} holds no VAE weights (no encoder/decoder tensors): is it a VAE?")
    if any(k.startswith("encoder.down_blocks.") for k in state):  # diffusers naming in one file
        with torch.device("meta"):
            vae = AutoencoderKL.from_config(AutoencoderKL.load_config(config_dir / "vae"))
        try:
            vae.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as err:
            raise ModelLoadError(f"the VAE {vae_path} does not fit this model's VAE: {err}") from err
        with quiet_cast_warning():
            return vae.to(dtype)
    try:
        with quiet_cast_warning():
            vae = AutoencoderKL.from_single_file(state, config=str(config_dir), subfolder="vae",
                                                 local_files_only=True, torch_dtype=dtype)
    except Exception as err:  # noqa: BLE001 - diffusers raises KeyError/ValueError/RuntimeError/its own errors
        raise ModelLoadError(f"the VAE {vae_path} could not be read as a Stable Diffusion VAE: {err}") from err
    _check_loaded(vae, "VAE", vae_path)
    return vae


def make_noise_scheduler(prediction_type: str = "epsilon"):
    from diffusers import DDPMScheduler

    return DDPMScheduler(**NOISE_SCHEDULE, prediction_type=prediction_type)


def load_components(model_path: Path | str, family: str | None = None, vae_path: Path | str | None = None,
                    dtype: torch.dtype = torch.float32, tokenizer_cache: Path | str | None = None, *,
                    vae_dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Components:
    """Loads UNet, VAE, text encoders and tokenizers of an SD1.5/SDXL base model, offline.

    family: "sd15" | "sdxl", or None to detect it from the keys. vae_path: an optional separate VAE. dtype: the
    UNet's and text encoders' dtype (and the VAE's unless vae_dtype is given). device: where the models are built
    (default the CPU). The models are returned in eval mode with gradients off; the caller decides what trains.
    """
    device = torch.device(device) if device is not None else None
    path = Path(model_path)
    if family not in (None, "", *archs.FAMILIES):
        raise ModelLoadError(f"unknown model family {family!r}; expected sd15 or sdxl.")
    if not path.exists():
        raise ModelLoadError(f"the base model {path} does not exist.")
    if path.is_dir():
        family, folder, unet, vae, encoders = _load_diffusers_folder(path, family or None, dtype, vae_dtype, device)
    elif path.suffix.lower() in SINGLE_FILE_SUFFIXES:
        # With a separate VAE the checkpoint's own VAE is never converted (and may be absent).
        family, folder, unet, vae, encoders = _load_single_file(path, family or None, dtype, need_vae=not vae_path,
                                                                vae_dtype=vae_dtype, device=device)
    else:
        raise ModelLoadError(f"{path} is neither a diffusers folder nor a .safetensors/.ckpt checkpoint.")
    if vae_path:
        vae = load_vae(vae_path, Path(folder) if not path.is_dir() else path, vae_dtype or dtype)
        if device is not None:
            vae.to(device)
    for model in [unet, vae, *encoders]:
        model.requires_grad_(False)
        model.eval()
    if path.is_dir() and (path / "tokenizer").is_dir():
        from transformers import CLIPTokenizer

        subs = ["tokenizer", "tokenizer_2"][: len(encoders)]
        tokenizers = [CLIPTokenizer.from_pretrained(path, subfolder=s, local_files_only=True) for s in subs]
    else:
        tokenizers = tokenizers_for(family, tokenizer_cache)
    v_pred, ztsnr = _declared_prediction(path)
    prediction_type = "v_prediction" if v_pred else "epsilon"
    return Components(
        family=family, unet=unet, vae=vae, text_encoders=encoders, tokenizers=tokenizers,
        noise_scheduler=make_noise_scheduler(prediction_type), prediction_type=prediction_type,
        model_path=str(path), model_name=path.name, config_dir=str(folder),
        tiny=Path(folder).name.endswith("-tiny"), extra={"ztsnr": ztsnr},
    )


def _declared_prediction(path: Path) -> tuple[bool, bool]:
    """(v-prediction, zero terminal SNR) from a .safetensors checkpoint's keys or metadata (family.detect_prediction);
    a diffusers folder from its scheduler config."""
    if path.is_dir():
        config = _read_scheduler_config(path)
        return config.get("prediction_type") == "v_prediction", bool(config.get("rescale_betas_zero_snr"))
    if path.suffix.lower() != ".safetensors":
        return False, False
    from .family import detect_prediction, read_safetensors_header

    return detect_prediction(read_safetensors_header(path))


def _read_scheduler_config(folder: Path) -> dict:
    import json

    try:
        return json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def build_pipeline(components: Components, scheduler=None):
    """A StableDiffusion(XL)Pipeline over the same module objects (LoRA included), for samples; no safety checker.

    scheduler: a diffusers scheduler; default the model's own sampling scheduler from its config folder.
    """
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.schedulers import EulerDiscreteScheduler, PNDMScheduler

    if scheduler is None:
        try:
            config = archs.read_config(Path(components.config_dir), "scheduler")
        except (OSError, ValueError):  # a diffusers folder without a scheduler config
            config = {}
        cls = EulerDiscreteScheduler if components.family == "sdxl" else PNDMScheduler
        scheduler = cls.from_config(config or NOISE_SCHEDULE)
    c = components
    if c.family == "sdxl":
        return StableDiffusionXLPipeline(vae=c.vae, text_encoder=c.text_encoders[0], text_encoder_2=c.text_encoders[1],
                                         tokenizer=c.tokenizers[0], tokenizer_2=c.tokenizers[1], unet=c.unet,
                                         scheduler=scheduler)
    return StableDiffusionPipeline(vae=c.vae, text_encoder=c.text_encoders[0], tokenizer=c.tokenizers[0], unet=c.unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
