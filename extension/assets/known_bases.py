"""Well-known base models a LoRA is trained on: where each lives on Hugging Face, its family, size and licence.

One click in the Checkpoints panel (or `cloudlora model fetch sd15`) fills the source from this list. Sizes are what
the hub listed when the entry was written ("about"); the download itself trusts the hub's live size and sha256.
FLUX.1's single-file release holds the transformer alone, so its entries name the text encoders and autoencoder that
the store keeps beside it (flux_parts.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

GB = 1_000_000_000


@dataclass(frozen=True)
class HubFile:
    repo: str
    file: str


@dataclass(frozen=True)
class KnownBase:
    key: str  # what `cloudlora model fetch KEY` takes
    label: str
    family: str
    repo: str
    file: str
    size: int  # bytes, about (the checkpoint; parts add `parts_size`)
    licence: str
    licence_url: str
    gated: bool = False  # the hub asks you to accept the licence (and a token) before it serves the file
    parts: dict[str, HubFile] = field(default_factory=dict)
    parts_size: int = 0
    note: str = ""

    def as_dict(self) -> dict:
        return {"key": self.key, "label": self.label, "family": self.family, "repo": self.repo, "file": self.file,
                "size": self.size + self.parts_size, "licence": self.licence, "licence_url": self.licence_url,
                "gated": self.gated, "parts": {p: {"repo": f.repo, "file": f.file} for p, f in self.parts.items()},
                "note": self.note}


_FLUX_TE = "comfyanonymous/flux_text_encoders"  # the single-file CLIP-L and T5-XXL that Forge and ComfyUI load

BASES = (
    KnownBase("sd15", "SD 1.5", "sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5",
              "v1-5-pruned-emaonly.safetensors", int(4.27 * GB), "CreativeML OpenRAIL-M",
              "https://huggingface.co/spaces/CompVis/stable-diffusion-license"),
    KnownBase("sdxl", "SDXL base 1.0", "sdxl", "stabilityai/stable-diffusion-xl-base-1.0",
              "sd_xl_base_1.0.safetensors", int(6.94 * GB), "CreativeML OpenRAIL++-M",
              "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/LICENSE.md"),
    KnownBase("animagine-xl", "Animagine XL 3.1 (SDXL anime)", "sdxl", "cagliostrolab/animagine-xl-3.1",
              "animagine-xl-3.1.safetensors", int(6.94 * GB), "Fair AI Public License 1.0-SD",
              "https://freedevproject.org/faipl-1.0-sd/"),
    KnownBase("flux1-dev", "FLUX.1-dev", "flux", "black-forest-labs/FLUX.1-dev", "flux1-dev.safetensors",
              int(23.8 * GB), "FLUX.1 [dev] Non-Commercial License",
              "https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/LICENSE.md", gated=True,
              parts={"ae": HubFile("black-forest-labs/FLUX.1-dev", "ae.safetensors"),
                     "clip_l": HubFile(_FLUX_TE, "clip_l.safetensors"),
                     "t5xxl": HubFile(_FLUX_TE, "t5xxl_fp16.safetensors")},
              parts_size=int(10.4 * GB), note="needs 24 GB of GPU memory to train"),
    KnownBase("flux1-schnell", "FLUX.1-schnell", "flux", "black-forest-labs/FLUX.1-schnell",
              "flux1-schnell.safetensors", int(23.8 * GB), "Apache-2.0",
              "https://huggingface.co/black-forest-labs/FLUX.1-schnell/blob/main/README.md",
              parts={"ae": HubFile("black-forest-labs/FLUX.1-schnell", "ae.safetensors"),
                     "clip_l": HubFile(_FLUX_TE, "clip_l.safetensors"),
                     "t5xxl": HubFile(_FLUX_TE, "t5xxl_fp16.safetensors")},
              parts_size=int(10.4 * GB), note="needs 24 GB of GPU memory to train"),
)


def by_key(key: str) -> KnownBase | None:
    key = (key or "").strip().lower()
    return next((b for b in BASES if b.key == key), None)


def for_file(repo: str, file: str) -> KnownBase | None:
    """The entry for a repo and file (the FLUX.1 parts come with it), or for a repo alone when `file` is empty."""
    return next((b for b in BASES if b.repo.lower() == repo.lower() and (not file or b.file == file)), None)
