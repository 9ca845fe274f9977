"""A1111 1.10.1's Kohya LoRA key resolution, reproduced, to prove a LoRA file loads fully in the WebUI.

A1111 logs unmatched keys only at debug level, so a half-broken LoRA looks fine there; this checker fails loudly.
It mirrors extensions-builtin/Lora/networks.py (convert_diffusers_name_to_compvis, load_network's fallbacks for
SDXL `lora_unet`/`lora_te1_text_model` keys and the OpenCLIP `_q_proj` → MultiheadAttention rule) and
network.py's version detection. A1111's module names come from the base model's *A1111 single-file keys*
(sd_model.model / cond_stage_model.wrapped / conditioner.embedders[i].wrapped), never from our LoRA namer.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

EXPECTED_MODULES = {"sd15": {"unet": 192, "te": [72]}, "sdxl": {"unet": 722, "te": [72, 192]}}

_SUFFIX = {"attentions": {}, "resnets": {"conv1": "in_layers_2", "conv2": "out_layers_3", "norm1": "in_layers_0",
                                        "norm2": "out_layers_0", "time_emb_proj": "emb_layers_1",
                                        "conv_shortcut": "skip_connection"}}
_RE_X_PROJ = re.compile(r"(.*)_([qkv]_proj)$")


def convert_diffusers_name_to_compvis(key: str, is_sd2: bool) -> str:
    """networks.convert_diffusers_name_to_compvis of A1111 1.10.1."""
    def match(pattern):
        m = re.match(pattern, key)
        return [int(x) if x.isdigit() else x for x in m.groups()] if m else None

    if m := match(r"lora_unet_conv_in(.*)"):
        return f"diffusion_model_input_blocks_0_0{m[0]}"
    if m := match(r"lora_unet_conv_out(.*)"):
        return f"diffusion_model_out_2{m[0]}"
    if m := match(r"lora_unet_time_embedding_linear_(\d+)(.*)"):
        return f"diffusion_model_time_embed_{m[0] * 2 - 2}{m[1]}"
    if m := match(r"lora_unet_down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)"):
        suffix = _SUFFIX.get(m[1], {}).get(m[3], m[3])
        return f"diffusion_model_input_blocks_{1 + m[0] * 3 + m[2]}_{1 if m[1] == 'attentions' else 0}_{suffix}"
    if m := match(r"lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)"):
        suffix = _SUFFIX.get(m[0], {}).get(m[2], m[2])
        return f"diffusion_model_middle_block_{1 if m[0] == 'attentions' else m[1] * 2}_{suffix}"
    if m := match(r"lora_unet_up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)"):
        suffix = _SUFFIX.get(m[1], {}).get(m[3], m[3])
        return f"diffusion_model_output_blocks_{m[0] * 3 + m[2]}_{1 if m[1] == 'attentions' else 0}_{suffix}"
    if m := match(r"lora_unet_down_blocks_(\d+)_downsamplers_0_conv"):
        return f"diffusion_model_input_blocks_{3 + m[0] * 3}_0_op"
    if m := match(r"lora_unet_up_blocks_(\d+)_upsamplers_0_conv"):
        return f"diffusion_model_output_blocks_{2 + m[0] * 3}_{2 if m[0] > 0 else 1}_conv"
    if m := match(r"lora_te_text_model_encoder_layers_(\d+)_(.+)"):
        if is_sd2:
            if "mlp_fc1" in m[1]:
                return f"model_transformer_resblocks_{m[0]}_{m[1].replace('mlp_fc1', 'mlp_c_fc')}"
            if "mlp_fc2" in m[1]:
                return f"model_transformer_resblocks_{m[0]}_{m[1].replace('mlp_fc2', 'mlp_c_proj')}"
            return f"model_transformer_resblocks_{m[0]}_{m[1].replace('self_attn', 'attn')}"
        return f"transformer_text_model_encoder_layers_{m[0]}_{m[1]}"
    if m := match(r"lora_te2_text_model_encoder_layers_(\d+)_(.+)"):
        if "mlp_fc1" in m[1]:
            return f"1_model_transformer_resblocks_{m[0]}_{m[1].replace('mlp_fc1', 'mlp_c_fc')}"
        if "mlp_fc2" in m[1]:
            return f"1_model_transformer_resblocks_{m[0]}_{m[1].replace('mlp_fc2', 'mlp_c_proj')}"
        return f"1_model_transformer_resblocks_{m[0]}_{m[1].replace('self_attn', 'attn')}"
    return key


def a1111_layers(checkpoint_shapes: Mapping[str, tuple]) -> dict[str, tuple[str, tuple]]:
    """{A1111 network_layer_mapping name: (kind, weight shape)} from a checkpoint's A1111 keys.

    kind: "linear" | "conv" | "mha" (OpenCLIP's nn.MultiheadAttention, with the fused in_proj_weight).
    """
    roots = [("model.", ""), ("cond_stage_model.", ""), ("conditioner.embedders.0.", "0_"),
             ("conditioner.embedders.1.", "1_")]
    layers: dict[str, tuple[str, tuple]] = {}
    for key, shape in checkpoint_shapes.items():
        for root, prefix in roots:
            if not key.startswith(root):
                continue
            module, _, param = key[len(root):].rpartition(".")
            name = prefix + module.replace(".", "_")
            if param == "in_proj_weight":
                layers[name] = ("mha", tuple(shape))
            elif param == "weight" and len(shape) in (2, 4):
                layers[name] = ("conv" if len(shape) == 4 else "linear", tuple(shape))
            break
    return layers


def resolve(key: str, layers: Mapping[str, tuple]) -> tuple[str | None, str | None]:
    """(A1111 key, layer name it patches) for a Kohya module key, as networks.load_network resolves it."""
    is_sd2 = any(k.startswith("model_transformer_resblocks") for k in layers)
    sd_key = convert_diffusers_name_to_compvis(key, is_sd2)
    if sd_key in layers:
        return sd_key, sd_key
    m = _RE_X_PROJ.match(sd_key)
    if m and m.group(1) in layers:
        return sd_key, m.group(1)
    if "lora_unet" in key:
        sd_key = key.replace("lora_unet", "diffusion_model")
        return (sd_key, sd_key) if sd_key in layers else (None, None)
    if "lora_te1_text_model" in key:
        for replacement in ("0_transformer_text_model", "transformer_text_model"):
            sd_key = key.replace("lora_te1_text_model", replacement)
            if sd_key in layers:
                return sd_key, sd_key
    return None, None


def a1111_sd_version(metadata: Mapping[str, str]) -> str:
    """network.NetworkOnDisk's detection in A1111 1.10.1."""
    if str(metadata.get("ss_base_model_version", "")).startswith("sdxl_"):
        return "SDXL"
    if str(metadata.get("ss_v2", "")) == "True":
        return "SD2"
    return "SD1" if len(metadata) else "Unknown"


def forge_sd_version(metadata: Mapping[str, str]) -> str:
    """Forge's NetworkOnDisk.detect_version (extensions-builtin/sd_forge_lora/network.py, commit dfdcbab)."""
    arch = str(metadata.get("modelspec.architecture", ""))
    if str(metadata.get("modelspec.implementation", "")) == "https://github.com/black-forest-labs/flux":
        return "Flux"
    if arch == "flux-1-dev/lora":
        return "Flux"
    if arch == "stable-diffusion-xl-v1-base/lora" or str(metadata.get("ss_base_model_version", "")).startswith("sdxl_"):
        return "SDXL"
    if str(metadata.get("ss_v2", "")) == "True":
        return "SD2"
    if arch == "stable-diffusion-v1/lora":
        return "SD1"
    return "Unknown"


def checkpoint_shapes_of(components) -> dict[str, tuple]:
    """The base model's A1111 keys with shapes: from its single file if it has one, else via our writer's maps."""
    path = Path(getattr(components, "model_path", "") or "")
    if path.is_file() and path.suffix == ".safetensors":
        from cloudlora_backend.trainer.model.family import read_safetensors_header

        return {k: tuple(v["shape"]) for k, v in read_safetensors_header(path).items() if k != "__metadata__"}
    from cloudlora_backend.trainer.model import singlefile

    def base(model):  # the model's own weights, without peft's wrapping
        return {k.replace(".base_layer.", "."): v for k, v in model.state_dict().items() if "lora_" not in k}

    sd = singlefile.unet_to_ldm(base(components.unet), components.unet.config)
    sd.update(singlefile.clip_to_ldm(base(components.text_encoders[0]), singlefile.CLIP_ROOT[components.family][0]))
    if components.family == "sdxl":
        sd.update(singlefile.openclip_to_ldm(base(components.text_encoders[1])))
    return {k: tuple(v.shape) for k, v in sd.items()}


def _group(tensors: Mapping[str, tuple]) -> dict[str, dict[str, tuple]]:
    modules: dict[str, dict[str, tuple]] = {}
    for key, shape in tensors.items():
        name, _, part = key.partition(".")
        modules.setdefault(name, {})[part] = tuple(shape)
    return modules


def check_kohya_tensors(tensors: Mapping[str, tuple], checkpoint_shapes: Mapping[str, tuple]) -> dict:
    """Resolves every module like A1111 and checks shapes; returns counts. Raises AssertionError on any problem."""
    layers = a1111_layers(checkpoint_shapes)
    modules = _group(tensors)
    problems, resolved = [], {}
    for name, parts in modules.items():
        if set(parts) - {"dora_scale"} != {"lora_up.weight", "lora_down.weight", "alpha"}:
            problems.append(f"{name}: parts {sorted(parts)} are not lora_up.weight/lora_down.weight/alpha"
                            "[/dora_scale]")
            continue
        sd_key, layer = resolve(name, layers)
        if layer is None:
            problems.append(f"{name}: matches no A1111 module (A1111 would drop it silently)")
            continue
        kind, weight = layers[layer]
        up, down = parts["lora_up.weight"], parts["lora_down.weight"]
        if parts["alpha"] not in ((), (1,)):
            problems.append(f"{name}: alpha has shape {parts['alpha']}, not a scalar")
        if up[1] != down[0]:
            problems.append(f"{name}: rank mismatch up {up} / down {down}")
        if kind == "mha":
            ok = len(up) == 2 and up[0] * 3 == weight[0] and down[1] == weight[1]
        elif kind == "conv":
            ok = len(up) == 4 and (up[0], down[1]) == weight[:2] and down[2:] == weight[2:] and up[2:] == (1, 1)
        else:
            ok = len(up) == 2 and (up[0], down[1]) == weight
        if not ok:
            problems.append(f"{name}: up {up} / down {down} do not fit {sd_key} ({kind} {weight})")
        if "dora_scale" in parts:
            # network.py apply_weight_decompose: the norm is per input channel, shaped (1, in[, 1, 1]); an
            # OpenCLIP MultiheadAttention's q/k/v are patched through the fused in_proj_weight, where a
            # dora_scale cannot apply (A1111 counts it as an error and skips the layer).
            want = (1, weight[1]) + ((1, 1) if kind == "conv" else ())
            if kind == "mha" and not name.endswith("out_proj"):
                problems.append(f"{name}: DoRA on a fused MultiheadAttention projection does not apply in A1111")
            elif parts["dora_scale"] != want:
                problems.append(f"{name}: dora_scale {parts['dora_scale']} is not the input-axis shape {want}")
        resolved[name] = layer
    # A1111 patches an OpenCLIP MultiheadAttention only when q, k, v and out_proj all resolve.
    for layer in {v for v in resolved.values() if layers[v][0] == "mha"}:
        have = {k.rsplit("_", 2)[-2] for k, v in resolved.items() if v == layer}
        if have != {"q", "k", "v"} or layer + "_out_proj" not in resolved.values():
            problems.append(f"{layer}: A1111 needs q/k/v/out_proj LoRAs together, found {sorted(have)}")
    assert not problems, f"{len(problems)} Kohya modules would not load in A1111:\n" + "\n".join(problems[:20])
    te = {p: sum(1 for n in resolved if n.startswith(p)) for p in ("lora_te_", "lora_te1_", "lora_te2_")}
    return {"modules": len(resolved), "unet": sum(1 for n in resolved if n.startswith("lora_unet_")),
            "te": [c for c in te.values() if c]}


def assert_a1111_loadable(lora_path, components, expected: dict | None = None) -> dict:
    """Every key of the LoRA file resolves in A1111 against the base model, with the exact module counts, and the
    metadata makes A1111 and Forge show it for the right SD version. Returns the counts.

    expected: {"unet": n, "te": [n, ...]} when the module set is not the plain LoRA one (LoCon)."""
    from safetensors import safe_open

    with safe_open(str(lora_path), "pt") as f:
        metadata = f.metadata() or {}
        tensors = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    counts = check_kohya_tensors(tensors, checkpoint_shapes_of(components))
    family = components.family
    expected = expected or EXPECTED_MODULES[family]
    te_trained = bool(counts["te"])
    want = {"unet": expected["unet"], "te": expected["te"] if te_trained else []}
    assert {"unet": counts["unet"], "te": counts["te"]} == want, f"module counts {counts} != {want}"
    assert counts["modules"] == expected["unet"] + (sum(expected["te"]) if te_trained else 0)
    version = {"sd15": "SD1", "sdxl": "SDXL"}[family]
    assert a1111_sd_version(metadata) == version, f"A1111 would show it as {a1111_sd_version(metadata)}"
    assert forge_sd_version(metadata) == version, f"Forge would show it as {forge_sd_version(metadata)}"
    assert metadata.get("ss_output_name") == Path(lora_path).stem, "ss_output_name must equal the file stem"
    return counts


def a1111_updown(up, down, alpha, weight_shape, dora_scale=None, orig_weight=None):
    """The weight change A1111's network_lora applies: up @ down (flattened), times alpha / dim, in the layer's shape
    (lyco_helpers.rebuild_conventional + NetworkModule.finalize_updown with multiplier 1); with a dora_scale,
    NetworkModule.apply_weight_decompose of A1111 1.10 on top (the merged weight rescaled per input channel)."""
    dim = down.shape[0]
    updown = up.reshape(up.shape[0], -1).float() @ down.reshape(dim, -1).float()
    if updown.numel() == _numel(weight_shape):
        updown = updown.reshape(weight_shape)
    updown = updown * (float(alpha) / dim)
    if dora_scale is not None:
        orig = orig_weight.float()
        merged = updown + orig
        dims = len(weight_shape) - 1
        norm = (merged.transpose(0, 1).reshape(merged.shape[1], -1).norm(dim=1, keepdim=True)
                .reshape(merged.shape[1], *[1] * dims).transpose(0, 1))
        updown = merged * (dora_scale.float() / norm) - orig
    return updown


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n
