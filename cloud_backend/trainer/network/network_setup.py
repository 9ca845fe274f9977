"""Builds the network a run trains: LoRA, LoCon or DoRA from the config, or continued from a LoRA file.

Continuing follows sd-scripts `train_network.py`: `network_weights` loads a finished LoRA's weights into the new
network before training; with `dim_from_weights` the network is built from that file instead
(`networks/lora.py` `create_network_from_weights`: its modules, per-module ranks and alphas). Unlike sd-scripts,
a file that does not fit the configured network (another rank, modules the config would drop) is an error naming
the fix, never a partial load, so a continued LoRA always starts from exactly the given weights. The file's alphas
are kept, because a different alpha would change what the loaded LoRA does.
"""
from __future__ import annotations

from pathlib import Path

from . import lora, lora_file


def find_weights(value: str, channel: Path | None) -> Path | None:
    """The LoRA to continue from: `network_weights` as a path on this machine, else that name in the job's
    `network` channel, else the channel's only .safetensors file. None when nothing is asked for."""
    files = sorted(p for p in channel.rglob("*.safetensors") if p.is_file()) if channel and channel.is_dir() else []
    if value:
        path = Path(value)
        if path.is_file():
            return path
        for f in files:
            if f.name == path.name or f.stem == path.name:
                return f
        raise lora.LoraFileError(f"network_weights = \"{value}\" was not found on the training machine"
                                 + (f" nor in the job's network channel ({', '.join(f.name for f in files)})" if files
                                    else " and the job has no network channel")
                                 + ": continue from a LoRA through the job (Continue training / --continue-from).")
    if len(files) == 1:
        return files[0]
    if len(files) > 1:
        raise lora.LoraFileError(f"the job's network channel holds several LoRAs ({', '.join(f.name for f in files)}): "
                                 "name one with network_weights.")
    return None


def build(components, cfg, weights: Path | None = None, log=print) -> dict:
    """Injects the adapters the config (or the LoRA file) asks for and loads that file. Returns add_lora's groups.

    Raises lora.LoraFileError (the file does not fit) or ValueError (a network this model cannot carry)."""
    spec = cfg.network
    common = dict(conv_dim=spec.conv_dim, conv_alpha=spec.conv_alpha, use_dora=spec.dora)
    if weights is None:
        return lora.add_lora(components, cfg.network_dim, cfg.network_alpha, cfg.train_text_encoder, **common)
    kfile = lora_file.read_kohya(weights)
    if cfg.dim_from_weights:
        plans = lora_file.plans_from_file(components, kfile)
        if spec.dora != any(p.dora for p in plans.values()):
            log(f"note: dim_from_weights: the file decides whether the network is DoRA ({weights.name} is "
                f"{'DoRA' if not spec.dora else 'plain LoRA'})")
        frozen = [k for k in plans if k.startswith("text_encoder") and not cfg.train_text_encoder]
        if frozen:
            log(f"note: {weights.name} has text-encoder modules; with network_train_unet_only they are kept frozen")
    else:
        plans = {"unet": lora.unet_plan(components.unet, cfg.network_dim, cfg.network_alpha, spec.conv_dim,
                                        spec.conv_alpha, spec.dora)}
        if cfg.train_text_encoder:
            plans.update({f"text_encoder_{i}": lora.text_encoder_plan(te, cfg.network_dim, cfg.network_alpha, spec.dora)
                          for i, te in enumerate(components.text_encoders)})
        lora_file.check_fits(plans, components, kfile)
    groups = lora.add_lora(components, cfg.network_dim, cfg.network_alpha, cfg.train_text_encoder, plans=plans,
                           use_dora=False)
    n = lora_file.load_weights(components, kfile)
    total = len(lora.kohya_module_names(components))
    log(f"continuing from {weights.name}: {n} of {total} modules start from its weights"
        + (f" ({total - n} start fresh)" if total > n else ""))
    return groups
