"""Auto-captioning's config keys (this trainer's own, not sd-scripts'): `caption = "wd14" | "florence2"` makes
captioning the job's first phase (captions/stage.py), with its options; and the checks between them. Pure data +
Python: schema.py adds these to its table, cross_checks.py runs `cross_checks`.

caption_mode defaults to "keep": a caption someone wrote is never overwritten unless the config asks for it.
"""
from __future__ import annotations

from .option import Option

CAPTIONERS = ("", "wd14", "florence2")
TAG_KEYS = ("caption_threshold", "caption_character_threshold", "caption_exclude")

_O = Option
OPTIONS: list[Option] = [
    _O("caption", "str", "", choices=CAPTIONERS, group="dataset_arguments",
       doc='caption the images before training: "wd14" (tags) or "florence2" (sentences), read from the job\'s '
           'captioner channel; "" = off'),
    _O("caption_mode", "str", "keep", choices=("keep", "append", "replace"), group="dataset_arguments",
       doc="keep: images with a caption keep it; append: new tags are added to it; replace: it is rewritten"),
    _O("caption_threshold", "float", 0.35, min=0.0, max=1.0, group="dataset_arguments",
       doc="wd14: the confidence a general tag needs"),
    _O("caption_character_threshold", "float", 0.85, min=0.0, max=1.0, group="dataset_arguments",
       doc="wd14: the confidence a character tag needs"),
    _O("caption_exclude", "strs", [], group="dataset_arguments",
       doc='wd14: tags never written: "tag a,tag b" or a list'),
    _O("caption_detail", "str", "short", choices=("short", "detailed"), group="dataset_arguments",
       doc="florence2: one sentence (<CAPTION>) or a few (<DETAILED_CAPTION>)"),
]


def exclude_list(value) -> list[str]:
    """caption_exclude as tags: a list, or comma-separated strings."""
    items = value if isinstance(value, list) else [value]
    return [t.strip() for item in items for t in str(item).split(",") if t.strip()]


def cross_checks(vals: dict, given: set, family: str | None, errors: list, warnings: list) -> None:
    """Options of a captioner that is not the one chosen do nothing: say so."""
    captioner = vals["caption"]
    for key in ("caption_mode", *TAG_KEYS, "caption_detail"):
        if key not in given:
            continue
        if not captioner:
            warnings.append(f'{key} is used only while captioning: set caption = "wd14" or "florence2" (or remove it)')
        elif key in TAG_KEYS and captioner != "wd14":
            warnings.append(f'{key} applies to caption = "wd14" only; caption = "{captioner}" ignores it')
        elif key == "caption_detail" and captioner != "florence2":
            warnings.append(f'caption_detail applies to caption = "florence2" only; caption = "{captioner}" ignores it')
