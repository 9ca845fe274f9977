"""The Kohya TOML: read, validate, normalise and edit it. Pure Python + tomlkit (the WebUI side imports it; no torch).

The TOML may be flat or in tables ([model_arguments], [training_arguments], ...): like sd-scripts, every table is
flattened into one set of option names, and values keep their TOML types. Unlike sd-scripts, unknown keys are an
error (with the nearest known key), keys only Kohya's GUI writes are a warning, and every value is checked.

A key the TOML leaves out takes this trainer's per-family default (`cloudlora config defaults --family F` prints
them, with the reason for each), not sd-scripts' bare default.

Interface: default_toml(family), check(text, family) -> ConfigReport, format_toml(text, family), parse(text, family)
-> TrainConfig, set_keys(text, {key: value}, family), coerce(key, value). ConfigError(ValueError) lists every problem.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

import tomlkit
from tomlkit.exceptions import ParseError

from .schema import BY_NAME, FAMILIES, GUI_ONLY_KEYS, OPTIONS, WHY, defaults_for
from . import features as config_features
from .cross_checks import cross_checks
from .values import show, toml_literal, normalise_value
from . import flux_options


class ConfigError(ValueError):
    """The config has problems; `problems` lists every one (each names the key, the value and what is allowed)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("The training config has problems:\n" + "\n".join(f"- {p}" for p in self.problems))


@dataclass
class ConfigReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {"ok": self.ok, "errors": self.errors, "warnings": self.warnings}


def _family_check(family: str | None) -> str | None:
    if family in (None, ""):
        return None
    fam = str(family).lower().replace(".", "").replace("-", "")
    fam = {"sd1": "sd15", "sd15": "sd15", "sdv1": "sd15", "sdxl": "sdxl", "xl": "sdxl", "flux": "flux",
           "flux1": "flux", "fluxdev": "flux", "flux1dev": "flux"}.get(fam, fam)
    if fam not in FAMILIES:
        raise ConfigError([f"family {show(family)} is not supported; use one of: {', '.join(FAMILIES)}"])
    return fam


# --- the config object used everywhere after parsing

def _fields():
    out = [("family", "str | None", dataclasses.field(default=None))]
    for o in OPTIONS:
        default = o.default
        if isinstance(default, list):
            out.append((o.name, Any, dataclasses.field(default_factory=lambda d=default: list(d))))
        else:
            out.append((o.name, Any, dataclasses.field(default=default)))
    out.append(("ignored", dict, dataclasses.field(default_factory=dict)))
    return out


class _TrainConfigMethods:
    """Derived values, so no caller re-implements Kohya's rules."""

    @property
    def resolution_wh(self) -> tuple[int, int]:
        w, h = (int(x) for x in self.resolution.split(","))
        return w, h

    @property
    def effective_unet_lr(self) -> float:
        return self.unet_lr or self.learning_rate

    @property
    def train_text_encoder(self) -> bool:
        return not self.network_train_unet_only

    def text_encoder_lrs(self, n_encoders: int) -> list[float]:
        """One lr per text encoder: a single value applies to all; 0 means learning_rate."""
        v = self.text_encoder_lr
        vals = list(v) if isinstance(v, list) else [v] * n_encoders
        vals = (vals + [vals[-1]] * n_encoders)[:n_encoders]
        return [float(x) or self.learning_rate for x in vals]

    def warmup_steps(self, total_steps: int) -> int:
        w = self.lr_warmup_steps
        return int(round(w * total_steps)) if isinstance(w, float) and w < 1 else int(w)

    @property
    def prior_preservation(self) -> bool:
        return bool(self.reg_data_dir or self.class_prompt or self.num_class_images)

    @property
    def sample_prompt_text(self) -> str:
        v = self.sample_prompts
        return "\n".join(v) if isinstance(v, list) else (v or "")

    @property
    def network(self):
        """The NetworkSpec (LoRA / LoCon / DoRA) of network_module + network_args (checked when parsed)."""
        from .network_spec import parse as parse_network

        return parse_network(self.network_module, self.network_args)

    @property
    def effective_validation_seed(self) -> int:
        return self.seed if self.validation_seed is None else int(self.validation_seed)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


TrainConfig = dataclasses.make_dataclass("TrainConfig", _fields(), bases=(_TrainConfigMethods,))
TrainConfig.__module__ = __name__
TrainConfig.__doc__ = "One validated training config: every option of schema.OPTIONS, plus the family."


# --- reading

def _load(text: str) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text or "")
    except ParseError as err:
        raise ConfigError([f"not valid TOML: {err}"]) from err


def _plain(value: Any) -> Any:
    return value.unwrap() if hasattr(value, "unwrap") else value


def _flatten(doc) -> tuple[dict[str, Any], dict[str, str | None], list[str]]:
    """Kohya's flattening: top-level keys plus the keys of each table. Returns values, where each key lives, errors."""
    values: dict[str, Any] = {}
    where: dict[str, str | None] = {}
    errors: list[str] = []

    def put(key, value, table):
        if key in values:
            first = f"[{where[key]}]" if where[key] else "the top level"
            here = f"[{table}]" if table else "the top level"
            errors.append(f"{key} is set twice (in {first} and in {here}); keep one")
            return
        values[key] = value
        where[key] = table

    for key, value in doc.items():
        value = _plain(value)
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, dict):
                    errors.append(f"[{key}.{k}]: tables nest one level deep at most (sd-scripts flattens one level)")
                else:
                    put(k, v, key)
        elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            errors.append(f"[[{key}]] looks like a Kohya dataset config; this trainer reads the dataset's folders "
                          "(<repeats>_<trigger>) instead: remove it and set the options as plain keys")
        else:
            put(key, value, None)
    return values, where, errors


def _nearest(key: str) -> str:
    names = list(BY_NAME) + sorted(GUI_ONLY_KEYS)
    near = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if not near:
        near = difflib.get_close_matches(key.lower(), [n.lower() for n in names], n=1, cutoff=0.6)
        near = [n for n in names if n.lower() in near][:1]
    return f" (did you mean '{near[0]}'?)" if near else ""


def _analyse(text: str, family: str | None):
    """Everything check/parse/format need: normalised values, where they live, errors, warnings."""
    family = _family_check(family)
    doc = _load(text)
    raw, where, errors = _flatten(doc)
    warnings: list[str] = []
    vals = defaults_for(family)
    normalised: dict[str, Any] = {}
    ignored: dict[str, Any] = {}
    for key, value in raw.items():
        o = BY_NAME.get(key)
        if o is None:
            if key in config_features.NETWORK_ARG_KEYS:
                warnings.append(f"{key} is a Kohya GUI setting that sd-scripts reads only inside network_args; it "
                                f"is ignored here: write network_args = [\"{key}={_plain(value)}\"]")
            elif key in GUI_ONLY_KEYS:
                warnings.append(f"{key} is a Kohya GUI setting that sd-scripts never reads; it is ignored")
            else:
                errors.append(f"unknown key '{key}'{_nearest(key)}")
            continue
        v, err, warn = normalise_value(o, value)
        if err:
            errors.append(err)
            continue
        if warn:
            warnings.append(warn)
        if o.support == "ignored":
            if v != o.default and v not in ("", [], None):
                why = f": {o.doc}" if o.doc else ""
                warnings.append(f"{key} is not used by this trainer and is ignored{why}")
            ignored[key] = v
        elif o.support == "default" and v != o.default and v not in ("", [], None):
            why = f" ({o.doc})" if o.doc else ""
            errors.append(f"{key} = {show(value)} is not supported by this trainer{why}; remove it or set "
                          f"{key} = {toml_literal(o.default)}")
        normalised[key] = v
        vals[key] = v
    if vals["sample_every_n_steps"] and "sample_every_n_epochs" not in normalised:
        vals["sample_every_n_epochs"] = 0  # every N steps is the cadence asked for: the per-epoch default gives way
    if not errors:
        cross_checks(vals, set(normalised), family, errors, warnings)
    return doc, where, normalised, vals, ignored, errors, warnings, family


# --- the public interface

def check(text: str, family: str | None = None) -> ConfigReport:
    """Every problem (errors) and every doubt (warnings) in the TOML, without raising."""
    try:
        *_, errors, warnings, _fam = _analyse(text, family)
    except ConfigError as err:
        return ConfigReport(errors=err.problems)
    return ConfigReport(errors=errors, warnings=warnings)


def parse(text: str, family: str | None = None) -> TrainConfig:
    """The validated TrainConfig (family defaults for keys left out). Raises ConfigError listing every problem."""
    _doc, _where, _norm, vals, ignored, errors, _warnings, fam = _analyse(text, family)
    if errors:
        raise ConfigError(errors)
    cfg = TrainConfig(family=fam, ignored=ignored, **vals)
    if cfg.cache_text_encoder_outputs and (cfg.train_text_encoder or cfg.shuffle_caption or cfg.caption_dropout_rate
                                           or cfg.caption_tag_dropout_rate or cfg.caption_dropout_every_n_epochs):
        cfg.cache_text_encoder_outputs = False
    return cfg


def _set_in_doc(doc, key: str, value, where: str | None) -> None:
    container = doc[where] if where else doc
    container[key] = value


def format_toml(text: str, family: str | None = None) -> str:
    """Validated and normalised TOML (types fixed, enum spellings canonical), comments and layout kept.

    Raises ConfigError listing every problem; warnings do not stop it."""
    doc, where, normalised, _vals, _ignored, errors, _warnings, _fam = _analyse(text, family)
    if errors:
        raise ConfigError(errors)
    for key, value in normalised.items():
        current = _plain(doc[where[key]][key] if where[key] else doc[key])
        if current != value or type(current) is not type(value):
            _set_in_doc(doc, key, value, where[key])
    out = tomlkit.dumps(doc)
    return out if out.endswith("\n") or not out else out + "\n"


def coerce(key: str, value: Any) -> Any:
    """A value from a form field or `--set key=value` (often a string) as the option's type. Raises ConfigError."""
    o = BY_NAME.get(key)
    if o is None:
        raise ConfigError([f"unknown key '{key}'{_nearest(key)}"])
    if isinstance(value, str):
        s = value.strip()
        if o.kind == "bool" and s.lower() in ("1", "yes", "on", "0", "no", "off"):
            value = s.lower() in ("1", "yes", "on")
        elif o.kind == "floats" and "," in s:
            value = [x.strip() for x in s.split(",")]
        elif o.kind == "strs" and s.startswith("["):
            try:
                value = _plain(tomlkit.parse(f"x = {s}")["x"])
            except ParseError:
                pass
    v, err, _warn = normalise_value(o, value)
    if err:
        raise ConfigError([err])
    return v


def set_keys(text: str, updates: dict[str, Any], family: str | None = None) -> str:
    """Sets keys (where they already are, else at the top level), keeping comments. Raises ConfigError.

    A new `resolution` takes the bucket bounds along when they still hold the family's default values (the user
    never chose them): min_bucket_reso <= resolution <= max_bucket_reso, sd-scripts' rule, keeps holding. Bounds the
    user set (or sets in the same call) are left alone, and check() then names the conflict."""
    doc = _load(text)
    raw, where, errors = _flatten(doc)
    values = {}
    for key, value in updates.items():
        try:
            values[key] = coerce(key, value)
        except ConfigError as err:
            errors.extend(err.problems)
    if errors:
        raise ConfigError(errors)
    if "resolution" in values:
        values.update(_bounds_following(values["resolution"], raw, values, family))
    for key, value in values.items():
        if key in where:
            _set_in_doc(doc, key, value, where[key])
        else:
            doc[key] = value  # tomlkit puts new top-level keys before the first table
    return tomlkit.dumps(doc)


def _bounds_following(resolution: str, raw: dict, updates: dict, family: str | None) -> dict:
    """{min_bucket_reso/max_bucket_reso: value} for the bounds that must move so the resolution lies between them,
    among those still at the family's default (absent from the TOML, or holding exactly the default)."""
    try:
        w, h = (int(x) for x in str(resolution).split(","))
    except ValueError:
        return {}
    defaults = defaults_for(_family_check(family))
    out = {}
    for key, needed, breaks in (("min_bucket_reso", min(w, h), lambda cur, n: cur > n),
                                ("max_bucket_reso", max(w, h), lambda cur, n: cur < n)):
        if key in updates:
            continue
        current = _plain(raw.get(key, defaults[key]))
        if current == defaults[key] and breaks(current, needed):
            out[key] = needed
    return out


# The keys default_toml() shows, in order, grouped as in sd-scripts' --output_config.
_SHOWN = [
    ("Network", ["network_module", "network_dim", "network_alpha", "network_train_unet_only"]),
    ("Optimiser", ["optimizer_type", "learning_rate", "unet_lr", "text_encoder_lr", "lr_scheduler",
                   "lr_warmup_steps", "max_train_steps", "train_batch_size", "gradient_accumulation_steps"]),
    ("Data", ["resolution", "enable_bucket", "min_bucket_reso", "max_bucket_reso", "bucket_reso_steps",
              "bucket_no_upscale", "caption_extension", "shuffle_caption", "keep_tokens", "caption_dropout_rate",
              "flip_aug"]),
    ("Precision and memory", ["mixed_precision", "cache_latents", "cache_latents_to_disk",
                              "cache_text_encoder_outputs", "gradient_checkpointing"]),
    ("Loss", ["min_snr_gamma", "noise_offset", "prior_loss_weight"]),
    ("Run", ["clip_skip", "seed", "save_precision", "save_every_n_epochs", "save_every_n_steps",
             "sample_every_n_epochs", "sample_every_n_steps", "sample_prompts"]),
]


def default_toml(family: str = "sd15") -> str:
    """This trainer's defaults for the family as a commented Kohya TOML (what the train tab prefills)."""
    fam = _family_check(family) or "sd15"
    vals = defaults_for(fam)
    doc = tomlkit.document()
    title = {"sd15": "SD 1.5", "sdxl": "SDXL", "flux": "FLUX.1"}[fam]
    doc.add(tomlkit.comment(f"Kohya LoRA training config for {title} (cloudlora defaults; sd-scripts key names)."))
    doc.add(tomlkit.comment("The job sets the model, dataset and output name; keys left out take these defaults."))
    shown = _SHOWN + ([("FLUX.1", flux_options.SHOWN)] if fam == "flux" else [])
    for group, keys in shown:
        doc.add(tomlkit.nl())
        doc.add(tomlkit.comment(f"--- {group}"))
        for key in keys:
            if (fam == "sdxl" and key == "clip_skip") or (fam == "flux" and key in flux_options.HIDDEN):
                continue
            item = tomlkit.item(vals[key])
            why = WHY.get(key, {}).get(fam) or BY_NAME[key].doc
            if why:
                item.comment(why)
            doc.add(key, item)
    return tomlkit.dumps(doc)
