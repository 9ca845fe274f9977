"""`cloudlora lora inspect FILE`: what a LoRA file is (family, network, rank/alpha, triggers, base model, steps)
and which hosts load it; the same function as the Lora list's view (library/lora_info.py)."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..library.lora_info import FAMILY_NAMES, inspect
from .output import add_json_flag, print_json


def register(sub) -> None:
    p = sub.add_parser("lora", help="LoRA files: inspect")
    lsub = p.add_subparsers(dest="lora_command", metavar="ACTION")
    ins = lsub.add_parser("inspect", help="family, network type, rank/alpha, trigger words, base model hash, "
                                          "steps/epochs, and which hosts will load it")
    ins.add_argument("file", help="the LoRA .safetensors file")
    add_json_flag(ins)
    ins.set_defaults(func=_inspect)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _inspect(args) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"{path} is not a file.", "Give the path of a LoRA .safetensors file.")
    try:
        info = inspect(path)
    except (ValueError, OSError) as err:
        raise UserError(f"{path.name} is not a LoRA safetensors file ({err}).", "Check the file.") from err
    if args.json:
        print_json(info.as_dict())
        return 0
    rank = f"rank {info.rank}, alpha {info.alpha:g}" if info.alpha is not None else f"rank {info.rank}"
    lines = [
        ("file", info.file), ("family", FAMILY_NAMES.get(info.family, info.family)),
        ("network", f"{info.network} ({info.network_module or 'no ss_network_module'})"),
        ("rank/alpha", rank + (f"; conv rank {info.conv_rank}" if info.conv_rank else "")),
        ("modules", f"{info.modules}" + (" (text encoder included)" if info.text_encoder else " (UNet only)")),
        ("trigger words", ", ".join(info.trigger_words) or "-"),
        ("base model", f"{info.base_model or '-'} (hash {info.base_model_hash or '-'})"),
        ("steps/epochs", f"{info.steps if info.steps is not None else '-'} steps, epoch "
                         f"{info.epoch if info.epoch is not None else '-'} of "
                         f"{info.epochs if info.epochs is not None else '-'}"),
    ]
    for key, value in lines:
        print(f"{key + ':':15}{value}")
    print("hosts:")
    for host_name, verdict in info.hosts.items():
        print(f"  {host_name + ':':13}{verdict}")
    return 0
