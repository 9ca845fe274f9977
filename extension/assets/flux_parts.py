"""FLUX.1's separate files: CLIP-L, T5-XXL and the autoencoder that a transformer-only checkpoint (BFL's
flux1-dev.safetensors) needs beside it, checked from their safetensors headers before anything is uploaded.

An all-in-one checkpoint (Forge's / ComfyUI's flux1-dev-fp8.safetensors) holds all four parts and needs none. Parts
are stored under the model's own prefix (models/<name>/<part>/<file>) through the same resumable, SHA-256-checked
transfer as the checkpoint, and listed in its manifest ("parts"), from which a job gets its clip_l / t5xxl / ae
channels.
"""
from __future__ import annotations

from pathlib import Path

from cloudlora_backend.trainer.model.family import NotSafetensorsError, read_safetensors_header
from cloudlora_backend.trainer.model import flux_keys as K

from ..errors import UserError

PARTS = K.PARTS[1:]  # clip_l, t5xxl, ae
FLAGS = {"clip_l": "--clip-l", "t5xxl": "--t5xxl", "ae": "--ae"}


def _parts_in(path: Path) -> list[str]:
    try:
        return K.parts_in(read_safetensors_header(path))
    except NotSafetensorsError as err:
        raise UserError(str(err), "Check that the file is a complete .safetensors file.") from err


def check(path: Path, family: str, parts: dict | None) -> dict[str, Path]:
    """The part files to upload with the checkpoint at `path`, each checked to hold what it is given as.

    Raises UserError when parts are given for another family, when a file is not the part it is given as, or when
    a FLUX.1 checkpoint would still lack a part (naming the flag that adds it)."""
    given = {p: Path(v).expanduser() for p, v in (parts or {}).items() if v}
    unknown = sorted(set(given) - set(PARTS))
    if unknown:
        raise UserError(f"Unknown model part(s): {', '.join(unknown)}.", f"Parts are {', '.join(PARTS)}.")
    if family != "flux":
        if given:
            raise UserError("Separate text encoder / autoencoder files are for FLUX.1 checkpoints only; "
                            f"{path.name} is {family}.", "Upload the checkpoint alone.")
        return {}
    have = set(_parts_in(path))
    for part, file in given.items():
        if not file.is_file():
            raise UserError(f"The {K.PART_LABELS[part]} file {file} does not exist.",
                            f"Give the path of the file ({FLAGS[part]} PATH).")
        if file.suffix.lower() != ".safetensors":
            raise UserError(f"{file.name} is not a .safetensors file.",
                            f"Give the {K.PART_LABELS[part]} as .safetensors (e.g. {K.PART_FILES[part]}).")
        if part not in _parts_in(file):
            raise UserError(f"{file.name} holds no {K.PART_LABELS[part]} (its tensor names are not {part}'s).",
                            f"Give FLUX.1's {K.PART_LABELS[part]} file, e.g. {K.PART_FILES[part]}.")
        if part in have:
            raise UserError(f"{path.name} already holds the {K.PART_LABELS[part]}; {file.name} would replace it.",
                            f"Leave {FLAGS[part]} out (the all-in-one file is complete).")
    missing = [p for p in PARTS if p not in have and p not in given]
    if missing:
        flags = " ".join(f"{FLAGS[p]} {K.PART_FILES[p]}" for p in missing)
        raise UserError(
            f"{path.name} holds the FLUX.1 transformer but not the "
            f"{', '.join(K.PART_LABELS[p] for p in missing)}, which training needs.",
            f"Upload it with them: {flags} (the files sd-scripts and ComfyUI use), or upload an all-in-one "
            "checkpoint instead.")
    return given


def key_for(name: str, part: str, file: Path) -> str:
    return f"models/{name}/{part}/{file.name}"
