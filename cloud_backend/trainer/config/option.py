"""One key of the Kohya TOML: its type, default, support level and bounds. Below the option tables that use it
(schema.py, flux_options.py), so neither imports the other."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    name: str
    kind: str  # bool | int | float | number (int or float) | str | floats (float or list) | strs (str or list) | resolution | text (str or list of lines)
    default: Any = None
    support: str = "yes"  # yes | ignored | default
    doc: str = ""
    choices: tuple = ()  # allowed values (strings compare case-insensitively and are normalised to this spelling)
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    group: str = "training_arguments"
