"""The config checks of the network types, continuing, validation, masked loss and noise schedule keys: the ones that
only make sense together, and which of them the SDXL and FLUX.1 trainers cannot honour. cross_checks.py runs them."""
from __future__ import annotations

# Kohya GUI keys whose sd-scripts spelling is an entry of network_args.
NETWORK_ARG_KEYS = {"conv_dim", "conv_alpha", "dora_wd"}


def cross_checks(vals: dict, given: set, family: str | None, errors: list, warnings: list) -> None:
    if family == "flux":
        _not_for_flux(vals, errors)
    _feature_checks(vals, given, errors, warnings, check_network=family != "flux")
    if family == "sdxl" and not vals["network_train_unet_only"] and not errors:
        from .network_spec import parse as parse_network

        if parse_network(vals["network_module"], vals["network_args"]).dora:
            errors.append("dora_wd with SDXL's text encoders: A1111 1.10 cannot apply a dora_scale to the second "
                          "encoder's fused attention projection, so that part would silently not load; set "
                          "network_train_unet_only = true (SDXL's default) to train DoRA on the UNet")


def _feature_checks(vals: dict, given: set, errors: list, warnings: list, check_network: bool = True) -> None:
    """The network, continuing, validation, masked-loss and noise-schedule keys that only make sense together."""
    from .network_spec import NetworkArgsError, parse as parse_network

    try:
        if check_network:
            parse_network(vals["network_module"], vals["network_args"])
    except NetworkArgsError as err:
        errors.append(str(err))
    if vals["dim_from_weights"] and not vals["network_weights"]:
        errors.append("dim_from_weights = true needs network_weights (the LoRA whose modules and ranks to take)")
    if vals["masked_loss"] and not (vals["alpha_mask"] or vals["conditioning_data_dir"]):
        errors.append("masked_loss = true needs a mask: alpha_mask = true (the images' transparency) or "
                      "conditioning_data_dir = \"mask\" (a folder of mask images in each <repeats>_<trigger> folder)")
    if vals["conditioning_data_dir"] and not (vals["masked_loss"] or vals["alpha_mask"]):
        warnings.append("conditioning_data_dir is set but masked_loss is not: the mask images are not used")
    if vals["zero_terminal_snr"] and not vals["v_parameterization"]:
        # sd-scripts warns the same (train_util.verify_training_args): at the last timestep an epsilon model sees
        # pure noise, which only v-prediction can learn from.
        warnings.append("zero_terminal_snr without v_parameterization: only v-prediction models learn well with a "
                        "zero-SNR schedule (v-prediction is also switched on by a checkpoint's v_pred key)")
    if not vals["validation_split"] and ({"validate_every_n_steps", "validate_every_n_epochs",
                                          "max_validation_steps", "validation_seed"} & given):
        warnings.append("validation settings are set but validation_split is 0: there is no validation loss")
    if vals["multires_noise_iterations"] and vals["noise_offset"]:
        warnings.append("noise_offset and multires_noise_iterations are both set: sd-scripts applies both (offset "
                        "first), which usually brightens or darkens too much; keep one")


# The features of issue 13 the FLUX.1 trainer (flux/train.py) does not implement, with the value that turns each on.
_NOT_FOR_FLUX = {"network_weights": "continuing from a LoRA", "validation_split": "the validation loss",
                 "masked_loss": "masked loss", "alpha_mask": "masked loss", "multires_noise_iterations":
                 "multi-resolution noise", "zero_terminal_snr": "zero terminal SNR (a DDPM schedule)"}


def _not_for_flux(vals: dict, errors: list) -> None:
    for key, what in _NOT_FOR_FLUX.items():
        if vals[key]:
            errors.append(f"{key}: {what} is not implemented for FLUX.1 here (it is for SD 1.5 and SDXL); remove it")
    if vals["network_args"]:
        errors.append("network_args: LoCon/DoRA and sd-scripts' lora_flux arguments are not implemented for FLUX.1; "
                      "remove them")
