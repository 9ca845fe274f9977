"""Loads LoRA files with one LyCORIS version, in its own process (LyCORIS keeps presets in class attributes).

Run as `python -m tests.trainer.lycoris_probe LYCORIS_DIR JOB.json`, with the trainer venv's python: torch and
safetensors come from there, LyCORIS (and einops, toml) from LYCORIS_DIR. JOB lists {"file", "model", "family"};
for each file it prints one JSON line with what LyCORIS made of it along the two ways sd-scripts uses a network
module: `create_network_from_weights` (dim_from_weights) and `create_network(**ss_network_args)` + `load_weights`
(network_weights), both after `apply_to`. Each reports the error, or the missing and unexpected keys and the keys
whose loaded tensor differs from the file's.
"""
from __future__ import annotations

import json
import sys


def _compare(net, weights) -> list[str]:
    state = net.state_dict()
    return sorted(k for k, v in weights.items() if k in state and not state[k].float().equal(v.float()))


def _load(kohya, how: str, path: str, weights, meta, text_encoder, unet) -> dict:
    try:
        if how == "from_weights":
            net, _ = kohya.create_network_from_weights(1.0, path, None, text_encoder, unet, weights_sd=weights)
        else:
            args = json.loads(meta.get("ss_network_args", "{}"))
            net = kohya.create_network(1.0, int(meta["ss_network_dim"]), float(meta["ss_network_alpha"]), None,
                                       text_encoder, unet, **args)
        has_te = any(k.startswith("lora_te") for k in weights)
        net.apply_to(text_encoder, unet, has_te, True)
        info = net.load_weights(path) or {}
        return {"missing": sorted(info.get("missing keys", [])), "unexpected": sorted(info.get("unexpected keys", [])),
                "differ": _compare(net, weights), "modules": len(net.unet_loras) + len(net.text_encoder_loras)}
    except Exception as err:  # noqa: BLE001 - the error is the finding
        return {"error": f"{type(err).__name__}: {str(err)[:300]}"}


def _with_text_model(text_encoder):
    """The CLIP text encoder as sd-scripts' transformers (4.x) lays it out, with the `text_model` wrapper that
    transformers 5.6 dropped: LyCORIS names modules from named_modules(), and the files say `lora_te_text_model_`."""
    import torch

    if hasattr(text_encoder, "text_model"):
        return text_encoder
    wrapper = torch.nn.Module()
    wrapper.text_model = text_encoder
    return wrapper


def main(lycoris_dir: str, job_file: str) -> None:
    sys.path.insert(0, lycoris_dir)
    import logging

    from safetensors import safe_open
    from safetensors.torch import load_file

    from lycoris import kohya

    logging.disable(logging.WARNING)
    from cloudlora_backend.trainer.model.load import load_components

    for item in json.loads(open(job_file, encoding="utf-8").read()):
        if item["family"] == "flux":
            from cloudlora_backend.trainer.flux.load import load_flux

            unet, text_encoder = load_flux(item["model"]).unet, None
        else:
            c = load_components(item["model"])
            unet, text_encoder = c.unet, _with_text_model(c.text_encoders[0])
        weights = load_file(item["file"])
        with safe_open(item["file"], "pt") as f:
            meta = f.metadata()
        out = {"file": item["file"]}
        for how in ("from_weights", "create_network"):
            out[how] = _load(kohya, how, item["file"], weights, meta, text_encoder, unet)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
