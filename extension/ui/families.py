"""The FM Type labels the form shows and the model families they stand for; below the train form and the continue panel."""
from __future__ import annotations

FM_LABELS = {"SD 1.5": "sd15", "SDXL": "sdxl", "FLUX.1": "flux"}


def label_of_family(family: str) -> str:
    return next((k for k, v in FM_LABELS.items() if v == family), "SD 1.5")


def family_of_label(label) -> str:
    return FM_LABELS.get(label, "sd15")
