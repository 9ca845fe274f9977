"""Tiny random-weight SD1.5 / SDXL / FLUX.1 (flux/tiny.py) checkpoints with the real layer layout, for tests.

Same blocks, layers per block, transformer depths and text-encoder depths as the real models (so the LoRA key sets
are identical), tiny widths (the `*-tiny` configs in arch/). Written in the A1111 single-file layout.
Deterministic: the same seed and torch version give the same tensors (safetensors orders the header's metadata keys
as it likes, so the bytes may differ).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from .model import archs
from .model.singlefile import write_single_file

ARCHES = ("sd15", "sdxl", "flux")  # flux: flux/tiny.py (an all-in-one FLUX.1 file)


def build_tiny_models(arch: str, seed: int = 0):
    """(unet, vae, text_encoders) with random weights from the tiny config of `arch`."""
    if arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHES)}")
    folder = archs.arch_dir(arch, tiny=True)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return archs.models_from_configs(folder, arch)
    finally:
        torch.random.set_rng_state(generator_state)


def arch_digest(arch: str) -> str:
    """A short digest of the tiny configs of `arch`: a cached tiny file made from other configs is stale."""
    folder = archs.arch_dir(arch, tiny=True)
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.json")):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def is_current(path: Path | str, arch: str, seed: int = 0) -> bool:
    """Whether `path` is a tiny `arch` checkpoint built from the current configs with `seed` (header only)."""
    if arch == "flux":
        from .flux.tiny import is_current as flux_is_current
        return flux_is_current(path, seed=seed)
    from .model.family import read_safetensors_header

    try:
        meta = read_safetensors_header(path).get("__metadata__", {})
    except (OSError, ValueError):
        return False
    return (meta.get("cloudlora.tiny"), meta.get("cloudlora.seed"), meta.get("cloudlora.arch_digest")) == (
        arch, str(seed), arch_digest(arch))


def make_tiny_checkpoint(arch: str, out_path: Path | str, seed: int = 0, layout: str = "all-in-one") -> Path:
    """Writes a tiny `arch` checkpoint to out_path: A1111 single-file for sd15/sdxl, all-in-one for flux."""
    if arch == "flux":  # layout "parts": OUT holds the transformer; clip_l/t5xxl_fp16/ae.safetensors go beside it
        from .flux.tiny import write_tiny
        return write_tiny(out_path, layout=layout, seed=seed)["transformer"]
    if layout != "all-in-one":
        raise ValueError(f"--layout {layout} is for --arch flux only")
    unet, vae, encoders = build_tiny_models(arch, seed)
    metadata = {"cloudlora.tiny": arch, "cloudlora.seed": str(seed), "cloudlora.arch_digest": arch_digest(arch)}
    # fp16 on disk, like real checkpoints: half the size (about 11 MB for SD1.5, 30 MB for SDXL).
    return write_single_file(out_path, arch, unet, vae, encoders, dtype=torch.float16, metadata=metadata)


def main(argv: list[str] | None = None) -> int:
    """`python -m cloudlora_backend.trainer.tiny --arch sd15 OUT [--seed N]`: writes the file, prints its JSON facts.

    The `cloudlora make-tiny-model` command hands over to this in the trainer environment, which has torch.
    """
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m cloudlora_backend.trainer.tiny")
    ap.add_argument("--arch", required=True, choices=ARCHES)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layout", choices=("all-in-one", "parts"), default="all-in-one")
    args = ap.parse_args(argv)
    path = make_tiny_checkpoint(args.arch, args.out, seed=args.seed, layout=args.layout)
    print(json.dumps({"path": str(path), "arch": args.arch, "seed": args.seed, "bytes": path.stat().st_size}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
