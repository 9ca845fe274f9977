"""Which network the config asks for (LoRA, LoCon, DoRA), read from `network_module` + `network_args` as sd-scripts
and LyCORIS spell them. Pure Python: the config checker (WebUI side, no torch) and the trainer share it.

Conventions followed, each from its source:
- sd-scripts `networks/lora.py` `create_network`: `network_module = "networks.lora"` with
  `network_args = ["conv_dim=8", "conv_alpha=4"]` adds LoRA to the 3x3 convolutions of ResnetBlock2D, Downsample2D
  and Upsample2D (LoCon); `conv_alpha` defaults to 1 when only `conv_dim` is given.
- LyCORIS `lycoris/kohya.py` `create_network`: `network_module = "lycoris.kohya"` with `algo=lora` (its default;
  `locon` is the old name of the same thing), the same `conv_dim`/`conv_alpha`, and `dora_wd=True` for DoRA
  (weight-decomposed LoRA). Its `wd_on_output` picks the axis of the decomposition.
- What the file must be for A1111 1.10.1 (`extensions-builtin/Lora/network.py`, `apply_weight_decompose`): the
  `dora_scale` norm is taken per *input* channel (the column norm of the DoRA paper), so only `wd_on_output=False`
  gives a file A1111 applies correctly; ComfyUI's `weight_decompose` tells the two axes apart by shape and applies
  this one identically. An output-axis DoRA is therefore refused rather than written as a file A1111 misreads.
- The module set is sd-scripts' (`LoRANetwork.UNET_TARGET_REPLACE_MODULE` and, with conv_dim,
  `UNET_TARGET_REPLACE_MODULE_CONV2D_3X3`) for both modules; LyCORIS' `preset` (its own module sets) is not read.
- LoHa / LoKr (`algo=loha`, `algo=lokr`) and the other LyCORIS algorithms are not implemented: refused with the
  reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field

MODULES = ("networks.lora", "lycoris.kohya", "networks.lora_flux")
LYCORIS_ALGOS_SUPPORTED = ("lora", "locon")
LYCORIS_ALGOS_REFUSED = {
    "loha": "LoHa", "lokr": "LoKr", "ia3": "(IA)^3", "dylora": "DyLoRA", "glora": "GLoRA", "full": "native "
    "fine-tuning", "diag-oft": "Diag-OFT", "boft": "BOFT",
}
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")
# network_args keys each module understands (others are refused, so a typo never trains something else).
_KNOWN_ARGS = {
    "networks.lora": {"conv_dim", "conv_alpha"},
    "lycoris.kohya": {"algo", "conv_dim", "conv_alpha", "dora_wd", "weight_decompose", "wd_on_output", "wd_on_out"},
    "networks.lora_flux": set(),  # FLUX.1 (flux/lora.py): sd-scripts' lora_flux arguments are not implemented
}


@dataclass(frozen=True)
class NetworkSpec:
    """The network to train. conv_dim 0 = no 3x3 convolutions (plain LoRA)."""

    module: str = "networks.lora"
    conv_dim: int = 0
    conv_alpha: float = 1.0
    dora: bool = False
    args: dict = field(default_factory=dict)  # the network_args as given, for ss_network_args

    @property
    def kind(self) -> str:
        base = "LoCon" if self.conv_dim else "LoRA"
        return f"DoRA ({base})" if self.dora else base

    def ss_network_args(self) -> dict[str, str]:
        """The network_args as the file's ss_network_args: the given ones, plus, for lycoris.kohya, what LyCORIS'
        create_network needs to rebuild this network rather than its own defaults (lycoris/kohya.py
        create_network): `preset` (its default "full" adds LoCon layers of rank network_dim to every
        ResnetBlock2D, conv_in, conv_out and the time embedding; "attn-mlp" is sd-scripts' LoRA set),
        `conv_dim`/`conv_alpha` (its conv_alpha defaults to network_alpha, sd-scripts' to 1), and for DoRA
        `wd_on_output=False` (its default True puts dora_scale on the output axis; this file's is per input
        channel, shape (1, in), which A1111 and ComfyUI apply). Values are strings, as sd-scripts writes them."""
        out = {k: str(v) for k, v in self.args.items()}
        if self.module != "lycoris.kohya":
            return out
        out.setdefault("algo", "lora")
        if self.conv_dim:
            out["preset"] = "full"
            out["conv_dim"], out["conv_alpha"] = str(self.conv_dim), _num(self.conv_alpha)
        else:
            out["preset"] = "attn-mlp"
        if self.dora:
            out["dora_wd"] = "True"
            out.pop("weight_decompose", None)
            out.pop("wd_on_out", None)
            out["wd_on_output"] = "False"
        return out


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(float(value))


class NetworkArgsError(ValueError):
    """network_module / network_args ask for something this trainer cannot write faithfully; the message says why."""


def _split_args(network_args: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in network_args or []:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise NetworkArgsError(f"network_args entry {item!r} is not key=value (e.g. \"conv_dim=8\")")
        out[key] = value.strip()
    return out


def _bool(key: str, value: str) -> bool:
    v = value.lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise NetworkArgsError(f"network_args {key}={value!r} must be True or False")


def parse(network_module: str, network_args: list[str]) -> NetworkSpec:
    """The NetworkSpec for the config's network_module and network_args. Raises NetworkArgsError."""
    module = (network_module or "networks.lora").strip()
    if module not in MODULES:
        raise NetworkArgsError(
            f"network_module = \"{module}\" is not supported: use \"networks.lora\" (LoRA, LoCon with conv_dim) or "
            "\"lycoris.kohya\" (algo=lora/locon, DoRA with dora_wd=True)")
    args = _split_args(network_args)
    unknown = sorted(set(args) - _KNOWN_ARGS[module])
    if unknown:
        hint = ""
        if module == "networks.lora" and {"dora_wd", "algo"} & set(unknown):
            hint = "; DoRA and algo are LyCORIS arguments: set network_module = \"lycoris.kohya\""
        raise NetworkArgsError(f"network_args {', '.join(unknown)} not understood with network_module = "
                               f"\"{module}\" (known: {', '.join(sorted(_KNOWN_ARGS[module]))}){hint}")
    if module == "lycoris.kohya":
        algo = args.get("algo", "lora").lower()
        if algo in LYCORIS_ALGOS_REFUSED:
            raise NetworkArgsError(
                f"network_args algo={algo}: {LYCORIS_ALGOS_REFUSED[algo]} is not implemented in this trainer (its "
                "layers are LoRA, LoCon and DoRA; A1111 and ComfyUI load LyCORIS' own files, so train that with "
                "LyCORIS). Use algo=lora here (add conv_dim for LoCon, dora_wd=True for DoRA)")
        if algo not in LYCORIS_ALGOS_SUPPORTED:
            raise NetworkArgsError(f"network_args algo={algo} is not a LyCORIS algorithm this trainer knows; use "
                                   "algo=lora (or locon)")
    try:
        conv_dim = int(args.get("conv_dim", "0") or 0)
        conv_alpha = float(args["conv_alpha"]) if args.get("conv_alpha") not in (None, "") else 1.0
    except ValueError as err:
        raise NetworkArgsError(f"network_args conv_dim/conv_alpha must be numbers ({err})") from err
    if conv_dim < 0 or conv_dim > 1024:
        raise NetworkArgsError(f"network_args conv_dim={conv_dim} must be between 0 (off) and 1024")
    if conv_alpha <= 0:
        raise NetworkArgsError(f"network_args conv_alpha={conv_alpha:g} must be > 0")
    if "conv_alpha" in args and not conv_dim:
        raise NetworkArgsError("network_args conv_alpha is set without conv_dim: add conv_dim=N (e.g. 8) to train "
                               "the 3x3 convolutions, or remove conv_alpha")
    dora = _bool("dora_wd", args.get("dora_wd", args.get("weight_decompose", "false")))
    if dora and _bool("wd_on_output", args.get("wd_on_output", args.get("wd_on_out", "false"))):
        raise NetworkArgsError(
            "network_args wd_on_output=True: A1111 1.10 applies a DoRA file's dora_scale per input channel only, so "
            "an output-axis DoRA would load wrongly there. Remove wd_on_output (this trainer writes the input-axis "
            "form, which A1111 and ComfyUI both apply)")
    return NetworkSpec(module=module, conv_dim=conv_dim, conv_alpha=conv_alpha, dora=dora, args=dict(args))
