"""A Kohya LoRA file read back to continue training (sd-scripts' `network_weights`): its modules, ranks and alphas,
the network plan they imply, the check that it fits the config's network, and copying its tensors into the adapters.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from . import dora
from .dora import ADAPTER
from .lora import LoraFileError, Plan, candidate_names, kohya_module_names


@dataclass
class KohyaFile:
    path: Path
    metadata: dict[str, str]
    modules: dict[str, dict[str, torch.Tensor]]  # {name: {"lora_down.weight", "lora_up.weight", "alpha"?, ...}}

    @property
    def family(self) -> str | None:
        """From the key names first (sd-scripts' SDXL naming), then ss_base_model_version."""
        names = self.modules
        if any(n.startswith(("lora_te1_", "lora_te2_", "lora_unet_input_blocks_", "lora_unet_output_blocks_",
                             "lora_unet_middle_block_")) for n in names):
            return "sdxl"
        if any(n.startswith(("lora_te_", "lora_unet_down_blocks_", "lora_unet_up_blocks_", "lora_unet_mid_block_"))
               for n in names):
            return "sd15"
        version = self.metadata.get("ss_base_model_version", "")
        return "sdxl" if version.startswith("sdxl") else ("sd15" if version.startswith("sd_v1") else None)

    def rank_alpha(self, name: str) -> tuple[int, float]:
        """A module's rank (lora_down's first dimension) and alpha (the rank when the file has none, as sd-scripts'
        create_network_from_weights assumes for old files)."""
        parts = self.modules[name]
        rank = int(parts["lora_down.weight"].shape[0])
        alpha = float(parts["alpha"].float().item()) if "alpha" in parts else float(rank)
        return rank, alpha


def read_kohya(path: Path | str) -> KohyaFile:
    """A Kohya LoRA file (LoRA, LoCon, DoRA). Raises LoraFileError for anything else (LoHa, LoKr, diffusers/PEFT)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise LoraFileError(f"network_weights: {path} does not exist.")
    try:
        with safe_open(str(path), "pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise LoraFileError(f"network_weights: {path} is not a .safetensors LoRA ({err}).") from err
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        name, _, part = key.partition(".")
        modules.setdefault(name, {})[part] = value
    foreign = sorted({p for parts in modules.values() for p in parts}
                     - {"lora_down.weight", "lora_up.weight", "alpha", "dora_scale"})
    if foreign:
        kind = ("a LyCORIS LoHa" if any(p.startswith("hada_") for p in foreign) else
                "a LyCORIS LoKr" if any(p.startswith("lokr_") for p in foreign) else
                "a diffusers/PEFT LoRA" if any("lora_A" in p or "lora.down" in p for p in foreign) else "not a Kohya LoRA")
        raise LoraFileError(f"network_weights: {path.name} is {kind} (tensor parts like {foreign[0]!r}); only Kohya "
                            "LoRA/LoCon/DoRA files (lora_down/lora_up/alpha) can be continued.")
    incomplete = [n for n, parts in modules.items() if not {"lora_down.weight", "lora_up.weight"} <= set(parts)]
    if incomplete:
        raise LoraFileError(f"network_weights: {path.name} has modules without lora_down/lora_up (e.g. "
                            f"{incomplete[0]}): the file is damaged or not a LoRA.")
    if not modules:
        raise LoraFileError(f"network_weights: {path.name} holds no tensors.")
    return KohyaFile(path, metadata, modules)


def plans_from_file(components, kfile: KohyaFile) -> dict[str, Plan]:
    """{"unet": Plan, "text_encoder_<i>": Plan} with exactly the file's modules, ranks, alphas and DoRA layers
    (sd-scripts' `create_network_from_weights`, which `dim_from_weights` uses). Raises LoraFileError."""
    if kfile.family and kfile.family != components.family:
        label = {"sd15": "SD 1.5", "sdxl": "SDXL"}
        raise LoraFileError(f"network_weights: {kfile.path.name} is an {label[kfile.family]} LoRA, but the job's model "
                            f"is {label.get(components.family, components.family)}: pick a LoRA of the same family.")
    candidates = candidate_names(components)
    unknown = sorted(n for n in kfile.modules if n not in candidates)
    if unknown:
        raise LoraFileError(f"network_weights: {len(unknown)} modules of {kfile.path.name} match no layer of this "
                            f"model (e.g. {unknown[0]}): it was trained on another architecture.")
    plans: dict[str, Plan] = {}
    for name in kfile.modules:
        where, path = candidates[name]
        plan = plans.setdefault(where, Plan())
        plan.modules[path] = kfile.rank_alpha(name)
        if "dora_scale" in kfile.modules[name]:
            plan.dora.add(path)
    return plans


def check_fits(plans_wanted: Mapping[str, Plan], components, kfile: KohyaFile) -> None:
    """Without dim_from_weights the config decides the network; the file must fit it module for module (same
    ranks, no module the config would drop, the same DoRA-ness), else the continued LoRA would not start from it."""
    from_file = plans_from_file(components, kfile)
    wanted = {(w, p): ra for w, plan in plans_wanted.items() for p, ra in plan.modules.items()}
    dora_wanted = {(w, p) for w, plan in plans_wanted.items() for p in plan.dora}
    fix = "set dim_from_weights = true (the file then decides the modules and ranks) or match the config to the file"
    for where, plan in from_file.items():
        for path, (rank, _alpha) in plan.modules.items():
            if (where, path) not in wanted:
                raise LoraFileError(f"network_weights: {kfile.path.name} has a module the config does not train "
                                    f"({where} {path}; e.g. text-encoder or conv_dim layers): {fix}.")
            if wanted[(where, path)][0] != rank:
                raise LoraFileError(f"network_weights: {kfile.path.name} has rank {rank} at {where} {path}, the config "
                                    f"{wanted[(where, path)][0]} (network_dim / conv_dim): {fix}.")
            if ((where, path) in dora_wanted) != (path in plan.dora):
                raise LoraFileError(f"network_weights: {kfile.path.name} is {'' if path in plan.dora else 'not '}DoRA "
                                    f"but the config {'asks for' if (where, path) in dora_wanted else 'does not ask for'}"
                                    f" DoRA (dora_wd): {fix}.")


def load_weights(components, kfile: KohyaFile) -> int:
    """Copies the file's tensors into the injected adapters (alpha included); returns the number of modules."""
    names = kohya_module_names(components)
    n = 0
    with torch.no_grad():
        for name, parts in kfile.modules.items():
            if name not in names:
                raise LoraFileError(f"network_weights: module {name} of {kfile.path.name} has no adapter here.")
            model, path = names[name]
            layer = model.get_submodule(path)
            for part, target in (("lora_down.weight", layer.lora_A[ADAPTER].weight),
                                 ("lora_up.weight", layer.lora_B[ADAPTER].weight)):
                value = parts[part]
                if value.numel() != target.numel():
                    raise LoraFileError(f"network_weights: {name}.{part} has shape {tuple(value.shape)}, the layer "
                                        f"needs {tuple(target.shape)}.")
                target.copy_(value.reshape(target.shape).to(target.dtype))
            rank, alpha = kfile.rank_alpha(name)
            layer.lora_alpha[ADAPTER] = alpha
            layer.scaling[ADAPTER] = alpha / rank
            scale = dora.scale_of(layer)
            if scale is not None and "dora_scale" in parts:
                scale.copy_(parts["dora_scale"].reshape(scale.shape).to(scale.dtype))
            n += 1
    return n
