"""What a LoRA file is and who will load it, from its safetensors header alone (pure Python, no torch): the
`cloudlora lora inspect` view.

Family from the key names first (sd-scripts' SDXL naming `lora_te1_`/`input_blocks_`, FLUX.1's `double_blocks_`),
then the metadata (`ss_base_model_version`, `modelspec.architecture`). Network type from the tensors: `dora_scale`
is DoRA, a 4-D lora_down with a kernel larger than 1x1 is LoCon, `hada_`/`lokr_` are LyCORIS' LoHa/LoKr. Which
hosts load it follows what was checked in them (REFERENCE.md §5 and issue 21): A1111 1.10 has no FLUX.1 and no
LyCORIS algorithms beyond LoRA/LoCon/DoRA/LoHa/LoKr; LyCORIS' create_network_from_weights builds every DoRA with
dora_scale on the output axis, so an input-axis DoRA (A1111's form) loads there only through create_network with
the file's ss_network_args (wd_on_output=False).
"""
from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

FAMILY_NAMES = {"sd15": "SD 1.5", "sd2": "SD 2.x", "sdxl": "SDXL", "flux": "FLUX.1", "": "unknown"}
_SCALAR = {"F16": "<e", "F32": "<f", "F64": "<d"}


@dataclass
class LoraInfo:
    file: str
    family: str  # sd15 | sd2 | sdxl | flux | "" (unknown)
    network: str  # LoRA | LoCon | DoRA (LoRA) | DoRA (LoCon) | LoHa | LoKr
    network_module: str
    rank: int | None
    alpha: float | None
    conv_rank: int | None
    modules: int
    text_encoder: bool
    trigger_words: list[str]
    base_model: str
    base_model_hash: str  # ss_sd_model_hash (A1111's old short hash)
    base_model_sha256: str
    steps: int | None
    epoch: int | None
    epochs: int | None
    hosts: dict[str, str] = field(default_factory=dict)  # host -> "loads" or why not

    def as_dict(self) -> dict:
        return asdict(self)


def read_header(path: Path | str) -> tuple[dict, dict, int]:
    """(tensor entries, metadata, data offset) of a .safetensors file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > 100 * 1024 * 1024:
            raise ValueError(f"{path} is not a safetensors file (header of {n} bytes)")
        header = json.loads(f.read(n))
    meta = header.pop("__metadata__", None) or {}
    return header, meta, 8 + n


def _scalar(path, entry: dict, offset: int) -> float | None:
    fmt = _SCALAR.get(entry.get("dtype"))
    start, end = entry["data_offsets"]
    if entry.get("dtype") == "BF16" and end - start == 2:
        with open(path, "rb") as f:
            f.seek(offset + start)
            return struct.unpack("<f", b"\x00\x00" + f.read(2))[0]
    if not fmt or end - start != struct.calcsize(fmt):
        return None
    with open(path, "rb") as f:
        f.seek(offset + start)
        return struct.unpack(fmt, f.read(end - start))[0]


def _family(names: list[str], meta: dict) -> str:
    if any(n.startswith(("lora_unet_double_blocks_", "lora_unet_single_blocks_", "lora_transformer_")) for n in names):
        return "flux"
    if any(n.startswith(("lora_te1_", "lora_te2_", "lora_unet_input_blocks_", "lora_unet_output_blocks_",
                         "lora_unet_middle_block_")) for n in names):
        return "sdxl"
    version = str(meta.get("ss_base_model_version", ""))
    arch = str(meta.get("modelspec.architecture", ""))
    if version.startswith("flux") or arch.startswith("flux"):
        return "flux"
    if version.startswith("sdxl") or arch.startswith("stable-diffusion-xl"):
        return "sdxl"
    if meta.get("ss_v2") == "True" or version.startswith("sd_v2"):
        return "sd2"
    if names and any(n.startswith(("lora_te_", "lora_unet_")) for n in names):
        return "sd15"
    return ""


def _triggers(meta: dict) -> list[str]:
    if meta.get("modelspec.trigger_phrase"):
        return [t.strip() for t in meta["modelspec.trigger_phrase"].split(",") if t.strip()]
    try:
        dirs = json.loads(meta.get("ss_dataset_dirs") or "{}")
    except ValueError:
        dirs = {}
    out = []
    for folder in dirs:  # sd-scripts' "<repeats>_<trigger>" folders
        head, sep, rest = folder.partition("_")
        if sep and head.isdigit() and rest:
            out.append(rest)
    return out


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _hosts(family: str, network: str, module: str, meta: dict) -> dict[str, str]:
    lycoris_only = network in ("LoHa", "LoKr")
    hosts = {
        "A1111 1.10": "no: A1111 has no FLUX.1" if family == "flux" else "loads",
        "Forge": "loads",
        "ComfyUI": "loads",
    }
    if lycoris_only or module.startswith("lycoris"):
        hosts["sd-scripts"] = "with LyCORIS installed (network_module lycoris.kohya)"
    else:
        hosts["sd-scripts"] = "loads"
    if network.startswith("DoRA"):
        args = meta.get("ss_network_args", "")
        ok = '"wd_on_output": "False"' in args
        hosts["LyCORIS"] = ("loads through create_network with the file's ss_network_args (not "
                            "create_network_from_weights: it builds output-axis DoRA)" if ok else
                            "no: ss_network_args lacks wd_on_output=False, so LyCORIS builds dora_scale on the "
                            "output axis")
    else:
        hosts["LyCORIS"] = "loads"
    return hosts


def inspect(path: Path | str) -> LoraInfo:
    """The LoraInfo of one LoRA file. Raises ValueError for a file that is not a safetensors LoRA."""
    path = Path(path)
    entries, meta, offset = read_header(path)
    names = sorted({k.split(".")[0] for k in entries})
    if not names:
        raise ValueError(f"{path.name} holds no tensors")
    family = _family(names, meta)
    downs = {k.split(".")[0]: v for k, v in entries.items() if k.endswith(".lora_down.weight")}
    conv = {n: v for n, v in downs.items() if len(v["shape"]) == 4 and v["shape"][2:] != [1, 1]}
    if any(k.startswith("hada_") or ".hada_" in k for k in entries):
        network = "LoHa"
    elif any(".lokr_" in k for k in entries):
        network = "LoKr"
    else:
        network = "LoCon" if conv else "LoRA"
        if any(k.endswith(".dora_scale") for k in entries):
            network = f"DoRA ({network})"
    linear = [v["shape"][0] for n, v in downs.items() if n not in conv]
    rank = _int(meta.get("ss_network_dim")) or (max(linear) if linear else None)
    alpha = None
    try:
        alpha = float(meta["ss_network_alpha"])
    except (KeyError, ValueError):
        first = next((f"{n}.alpha" for n in downs if n not in conv and f"{n}.alpha" in entries), None)
        alpha = _scalar(path, entries[first], offset) if first else None
    return LoraInfo(
        file=str(path), family=family, network=network, network_module=meta.get("ss_network_module", ""),
        rank=rank, alpha=alpha, conv_rank=max(v["shape"][0] for v in conv.values()) if conv else None,
        modules=len(names), text_encoder=any(n.startswith("lora_te") for n in names),
        trigger_words=_triggers(meta), base_model=meta.get("ss_sd_model_name", ""),
        base_model_hash=meta.get("ss_sd_model_hash", ""), base_model_sha256=meta.get("ss_new_sd_model_hash", ""),
        steps=_int(meta.get("ss_steps")), epoch=_int(meta.get("ss_epoch")), epochs=_int(meta.get("ss_num_epochs")),
        hosts=_hosts(family, network, meta.get("ss_network_module", ""), meta),
    )
