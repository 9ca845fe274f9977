"""One Kohya TOML value checked and normalised against its option (option.Option): the type rules, ranges
and allowed values, and how values are shown in messages (as TOML, e.g. true, "x")."""
from __future__ import annotations

import math
from typing import Any

import tomlkit

from .option import Option


def toml_literal(v) -> str:
    return tomlkit.item(v).as_string() if v is not None else '""'


def show(v) -> str:
    """A value as the user wrote it in TOML (true, "x", [1, 2]), for messages."""
    try:
        return toml_literal(v)
    except Exception:  # noqa: BLE001 - anything tomlkit cannot render is shown as Python does
        return repr(v)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _num_from_str(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f


def not_finite(name: str, v) -> str | None:
    """The one check every numeric field passes through (TOML, REST, form, CLI): NaN and +-infinity are refused by
    name. NaN compares false with every bound, so range checks alone let it through (a paid job trains a NaN LoRA)."""
    if isinstance(v, float) and not math.isfinite(v):
        return f"{name} = {'nan' if math.isnan(v) else ('inf' if v > 0 else '-inf')} is not a finite number; " \
               "NaN and infinity are refused"
    return None


def finite_number(name: str, v, *, integer: bool = False, lo: float | None = None, hi: float | None = None):
    """A numeric field outside the TOML (a request body, a form, a flag) as a finite number, or ValueError naming
    the field: not a number, NaN, infinity, not whole when `integer`, or outside [lo, hi]."""
    if isinstance(v, str):
        parsed = _num_from_str(v.strip())
        if parsed is None:
            raise ValueError(f"{name} = {v!r} is not a number")
        v = parsed
    if not _is_num(v):
        raise ValueError(f"{name} = {v!r} is not a number")
    err = not_finite(name, float(v))
    if err:
        raise ValueError(err)
    if integer:
        if isinstance(v, float) and not v.is_integer():
            raise ValueError(f"{name} = {v!r} must be a whole number")
        v = int(v)
    if lo is not None and v < lo:
        raise ValueError(f"{name} = {v!r} is too small: it must be >= {lo:g}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} = {v!r} is too large: it must be <= {hi:g}")
    return v


def _range_error(o: Option, v) -> str | None:
    lo, hi = o.min, o.max
    if lo is not None and (v < lo or (o.min_exclusive and v <= lo)):
        return f"{o.name} = {show(v)} is too small: it must be {'>' if o.min_exclusive else '>='} {lo:g}"
    if hi is not None and v > hi:
        return f"{o.name} = {show(v)} is too large: it must be <= {hi:g}"
    return None


def normalise_value(o: Option, v) -> tuple[Any, str | None, str | None]:
    """(normalised value, error, warning) for one option's raw TOML value."""
    k = o.kind
    if k == "bool":
        if isinstance(v, bool):
            return v, None, None
        if isinstance(v, str) and v.lower() in ("true", "false"):
            return v.lower() == "true", None, f"{o.name} = {show(v)} is a string; it should be {v.lower()} without quotes"
        return v, f"{o.name} = {show(v)} must be true or false", None
    if k in ("int", "float", "number"):
        warn = None
        if isinstance(v, str) and _num_from_str(v) is not None:
            warn = f"{o.name} = {show(v)} is a string; it should be a number without quotes"
            v = _num_from_str(v)
        if not _is_num(v):
            return v, f"{o.name} = {show(v)} must be {'a whole number' if k == 'int' else 'a number'}", None
        if not_finite(o.name, v):
            return v, not_finite(o.name, v), None
        if k == "int":
            if isinstance(v, float) and not v.is_integer():
                return v, f"{o.name} = {show(v)} must be a whole number", None
            v = int(v)
        elif k == "float":
            v = float(v)
        if o.choices and v not in o.choices:
            return v, f"{o.name} = {show(v)} is not supported; allowed: {', '.join(map(str, o.choices))}", None
        return v, _range_error(o, v), warn
    if k == "floats":
        items = v if isinstance(v, list) else [v]
        out = []
        for x in items:
            if isinstance(x, str) and _num_from_str(x) is not None:
                x = float(x)
            if not _is_num(x):
                return v, f"{o.name} = {show(v)} must be a number or a list of two numbers", None
            if not_finite(o.name, x):
                return v, not_finite(o.name, x), None
            err = _range_error(o, float(x))
            if err:
                return v, err, None
            out.append(float(x))
        if not 1 <= len(out) <= 2:
            return v, f"{o.name} = {show(v)} takes one number, or two (one per SDXL text encoder)", None
        return (out if isinstance(v, list) and len(out) > 1 else out[0]), None, None
    if k == "strs":
        if isinstance(v, str):
            return ([v] if v else []), None, None
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return list(v), None, None
        return v, f"{o.name} = {show(v)} must be a list of strings, e.g. [\"weight_decay=0.01\"]", None
    if k == "text":
        if isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            return v, None, None
        return v, f"{o.name} = {show(v)} must be a file name or prompt lines (a string or a list of strings)", None
    if k == "resolution":
        return _resolution(o, v)
    # str
    if not isinstance(v, str):
        return v, f"{o.name} = {show(v)} must be a string (in quotes)", None
    if o.choices:
        for c in o.choices:
            if v.lower() == str(c).lower():
                return c, None, None
        allowed = ", ".join(f'"{c}"' if c == "" else c for c in o.choices)  # "" (off) shows as itself
        return v, f"{o.name} = {show(v)} is not supported; allowed: {allowed}", None
    return v, None, None


def _resolution(o: Option, v):
    warn = None
    if _is_num(v):
        parts = [v, v]
        warn = f"resolution = {show(v)}: sd-scripts expects a string; format writes \"{int(v)},{int(v)}\""
    elif isinstance(v, list):
        parts = v if len(v) == 2 else [None]
        warn = f"resolution = {show(v)}: sd-scripts expects a string \"W,H\" here; format writes it so"
    elif isinstance(v, str):
        parts = [p.strip() for p in v.split(",")]
        parts = parts * 2 if len(parts) == 1 else parts
    else:
        parts = [None]
    try:
        w, h = (int(p) for p in parts)
        if any(float(p) != int(p) for p in parts):
            raise ValueError
    except (TypeError, ValueError):
        return v, f"resolution = {show(v)} must be \"W,H\" (e.g. \"1024,1024\") or one number", None
    for x in (w, h):
        if x < 64 or x > 4096 or x % 8:
            return v, (f"resolution = {show(v)}: each side must be a multiple of 8 between 64 and 4096"), None
    return f"{w},{h}", None, warn
