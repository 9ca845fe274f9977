"""Renders a finished job's epoch files x LoRA weights with the trainer's own pipeline (the standalone app's "Compare
epochs"; inside A1111/Forge the WebUI's txt2img does it).

    python -m cloudlora_backend.trainer.loop.epoch_grid REQUEST.json

REQUEST: {"model": base model file, diffusers folder or a job's model channel, "family": "sd15" | "sdxl",
"loras": [epoch LoRA files, rows], "weights": [columns], "prompts": [{"prompt", "negative", "width", "height",
"steps", "cfg_scale", "seed"}], "sampler": Kohya's sample_sampler, "out_dir": folder}.

The base model loads as the trainer's sampling loads it (model/load.py, build_pipeline with the config's sampler).
Each LoRA (Kohya LoRA/LoCon, read by network/lora_file.py) is merged into the base weights at each weight
(W + weight * alpha/rank * up @ down), the prompts rendered with their fixed seeds (sampling.render: the same noise
in every cell), and the weights put back. Writes `<out_dir>/p<P>_e<E>_w<W>.png` and `<out_dir>/manifest.json`
({"cells": [{"prompt", "lora", "weight", "file"}]}); prints `cell N/TOTAL` after each image and, on a failure the
user can fix, `error: <what and the fix>` (exit 2).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

MANIFEST = "manifest.json"


class GridError(ValueError):
    """A request that cannot be rendered; the message says what and the fix."""


def merge(components, kfile, weight: float) -> dict:
    """Adds `weight` times the Kohya file's deltas to the base weights; returns {module: original weight} for
    restore()."""
    from ..network.lora import candidate_names

    names = candidate_names(components)
    models = {"unet": components.unet, **{f"text_encoder_{i}": e for i, e in enumerate(components.text_encoders)}}
    unknown = sorted(n for n in kfile.modules if n not in names)
    if unknown:
        raise GridError(f"{kfile.path.name} has modules this {components.family} model does not have (e.g. "
                        f"{unknown[0]}): it was trained on another base model. Compare it on the base model it was "
                        "trained on.")
    saved = {}
    with torch.no_grad():
        for name, parts in kfile.modules.items():
            if "dora_scale" in parts:
                raise GridError(f"{kfile.path.name} is a DoRA LoRA, which this comparison cannot merge yet. Compare "
                                "it inside A1111/Forge (their txt2img renders DoRA), or judge the job's own samples.")
            model_key, path = names[name]
            module = models[model_key].get_submodule(path)
            rank, alpha = kfile.rank_alpha(name)
            up = parts["lora_up.weight"].to(torch.float32).flatten(1)
            down = parts["lora_down.weight"].to(torch.float32).flatten(1)
            delta = (up @ down).reshape(module.weight.shape) * (alpha / rank * weight)
            saved[module] = module.weight.detach().clone()
            module.weight.add_(delta.to(module.weight.device, module.weight.dtype))
    return saved


def restore(saved: dict) -> None:
    with torch.no_grad():
        for module, weight in saved.items():
            module.weight.copy_(weight)


def render_grid(request: dict, log=print) -> list[dict]:
    from ..config.prompt_lines import SamplePrompt
    from ..model.load import ModelLoadError, build_pipeline, load_components
    from ..network.lora import LoraFileError
    from ..network.lora_file import read_kohya
    from . import sampling

    out_dir = Path(request["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    model = Path(request["model"])
    if model.is_dir() and not (model / "model_index.json").is_file() and not (model / "unet").is_dir():
        from ..__main__ import InputError, find_model

        try:
            model = find_model(model)
        except InputError as err:
            raise GridError(str(err)) from None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    try:
        components = load_components(model, request.get("family") or None, dtype=dtype, vae_dtype=torch.float32,
                                     device=device)
        kfiles = [read_kohya(p) for p in request["loras"]]
    except (ModelLoadError, LoraFileError) as err:
        raise GridError(str(err)) from None
    pipe = build_pipeline(components, sampling.make_scheduler(request.get("sampler") or "euler_a",
                                                              components.noise_scheduler))
    pipe.set_progress_bar_config(disable=True)
    prompts = [SamplePrompt(p["prompt"], p.get("negative", ""), int(p.get("width") or 0), int(p.get("height") or 0),
                            int(p.get("steps") or 20), float(p.get("cfg_scale") or 7.0), p.get("seed"))
               for p in request["prompts"]]
    default_size = tuple(request.get("resolution") or (512, 512))
    weights = [float(w) for w in request["weights"]]
    total, done, cells = len(kfiles) * len(weights) * len(prompts), 0, []
    for e, kfile in enumerate(kfiles):
        for w_index, weight in enumerate(weights):
            saved = merge(components, kfile, weight)
            try:
                for p_index, prompt in enumerate(prompts):
                    stem = f"p{p_index}_e{e}_w{w_index}"
                    path = sampling.render(pipe, [prompt], out_dir, stem, default_size, int(prompt.seed or 0),
                                           device)[0]
                    final = path.rename(out_dir / f"{stem}.png")
                    cells.append({"prompt": p_index, "lora": e, "weight": weight, "file": final.name})
                    done += 1
                    log(f"cell {done}/{total}")
            finally:
                restore(saved)
    (out_dir / MANIFEST).write_text(json.dumps({"cells": cells}, indent=1), encoding="utf-8")
    return cells


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m cloudlora_backend.trainer.loop.epoch_grid REQUEST.json", file=sys.stderr)
        return 2
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        render_grid(request, log=lambda line: print(line, flush=True))
    except GridError as err:
        print(f"error: {err}", flush=True)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
