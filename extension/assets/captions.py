"""Reviewing a dataset's captions before training: the list, one caption edited, tag frequencies, one tag removed from
every caption, and which captions lack their folder's trigger word.

Pure logic over the local dataset folder (the one Validate/Upload work on). Nothing outside that folder is ever read
or written: an image or caption that is a symlink, or that resolves outside the folder, is left out. Every write is
atomic (atomic.py: a reader sees the old caption or the new one) and keeps the file's mode. Tags are the
comma-separated parts of a caption, trimmed; a sentence caption is one "tag" per comma-separated phrase.
The tab (ui/captions_panel.py), the CLI (`cloudlora dataset tags`) and REST (api/captions.py) call these functions.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from cloudlora_backend.trainer.data import layout as L

from .. import atomic
from ..errors import UserError
from .dataset_check import inside_strictly

MAX_CAPTION_BYTES = 64 * 1024  # a caption is a line of text: anything bigger is not one (and is never loaded whole)


def _safe_file(root: Path, path: Path | None) -> bool:
    return path is not None and not path.is_symlink() and path.is_file() and inside_strictly(root, path)


def _read(path: Path) -> str:
    with open(path, "rb") as f:
        data = f.read(MAX_CAPTION_BYTES + 1)
    if len(data) > MAX_CAPTION_BYTES:
        raise UserError(f"{path.name} is over {MAX_CAPTION_BYTES // 1024} KiB: not a caption.",
                        "Replace it with a one-line text caption.")
    try:
        return data.decode("utf-8-sig").strip()  # a BOM is not text: the trigger word stays first
    except UnicodeDecodeError as err:
        raise UserError(f"{path.name} is not UTF-8 text (byte {err.start}).",
                        "Save it again as UTF-8, or overwrite it here.") from err


def dataset_folder(arg: str | Path) -> Path:
    """The local dataset folder that DIR|NAME names: a folder; a .zip (extracted once into <data dir>/imports/); or
    the name of a folder under <data dir>/imports/ or prepared/ (what Validate made of a zip, dropped images, Wrap
    or Prepare)."""
    from ..settings import data_dir
    from .dataset_import import import_zip

    p = Path(str(arg)).expanduser()
    if p.is_dir():
        return p
    if p.is_file() and p.suffix.lower() == ".zip":
        return import_zip(p)
    name = str(arg).strip()
    if name and "/" not in name and "\\" not in name and name not in (".", ".."):
        for base in ("imports", "prepared"):
            candidate = data_dir() / base / name
            if candidate.is_dir():
                return candidate
    raise UserError(f"{arg} is no dataset folder on this machine.",
                    "Give the dataset's folder (holding e.g. 10_mytrigger/), a .zip, or the name of a folder under "
                    f"{data_dir() / 'imports'}. Captions are edited in the local copy: upload it again afterwards.")


def _layout(root: Path) -> L.Layout:
    if not root.is_dir():
        raise UserError(f"{root} does not exist or is not a folder.",
                        "Give the dataset folder (the one holding e.g. 10_mytrigger/).")
    try:
        return L.scan(root)
    except L.LayoutError as err:
        raise UserError(str(err), f"Run `cloudlora dataset check {root}` (or Validate) and fix what it says.") from err


def list_captions(root: Path | str) -> list[dict]:
    """Every image of the dataset with its caption: {image, rel, trigger, caption, caption_file, error}.

    `rel` is the image's path relative to the dataset folder ('10_demo/a.png'); `caption` is "" when there is no
    caption file; `error` says why a caption could not be read (not UTF-8, too big)."""
    root = Path(root).expanduser()
    layout = _layout(root)
    out = []
    for subset in layout.subsets:
        if subset.folder.is_symlink() or (subset.folder != root and not inside_strictly(root, subset.folder)):
            continue
        for item in subset.items:
            if not _safe_file(root, item.image):
                continue
            cap = item.caption_file if _safe_file(root, item.caption_file) else None
            text, error = "", ""
            if cap is not None:
                try:
                    text = _read(cap)
                except UserError as err:
                    error = err.message
            out.append({"image": str(item.image), "rel": item.image.relative_to(root).as_posix(),
                        "trigger": subset.trigger, "caption": text,
                        "caption_file": str(cap) if cap else None, "error": error})
    return out


def split_tags(caption: str) -> list[str]:
    """'a, b ,c,,' -> ['a', 'b', 'c']: the comma-separated parts, trimmed, empty parts dropped."""
    return [t.strip() for t in caption.split(",") if t.strip()]


def tag_frequencies(items: list[dict]) -> list[tuple[str, int]]:
    """(tag, number of captions holding it), most frequent first, then by name; a tag counts once per caption."""
    counts: Counter = Counter()
    for item in items:
        counts.update(set(split_tags(item["caption"])))
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def has_trigger(caption: str, trigger: str) -> bool:
    """The trigger word is in the caption as a whole word (or a whole tag), in any case."""
    if not trigger:
        return True
    if trigger.lower() in (t.lower() for t in split_tags(caption)):
        return True
    return re.search(rf"(?<!\w){re.escape(trigger)}(?!\w)", caption, re.IGNORECASE) is not None


def trigger_check(items: list[dict]) -> dict:
    """{"missing": [{rel, trigger}] (captions without their folder's trigger word), "uncaptioned": [rel] (no caption:
    training uses the trigger word alone)}."""
    missing = [{"rel": i["rel"], "trigger": i["trigger"]} for i in items
               if i["caption"] and not has_trigger(i["caption"], i["trigger"])]
    return {"missing": missing, "uncaptioned": [i["rel"] for i in items if not i["caption"] and not i["error"]]}


def review(root: Path | str) -> dict:
    """Everything the review shows: {root, items, tags: [[tag, count]], trigger: {missing, uncaptioned}}."""
    items = list_captions(root)
    return {"root": str(Path(root).expanduser()), "items": items,
            "tags": [[t, n] for t, n in tag_frequencies(items)], "trigger": trigger_check(items)}


def _item_for(root: Path, image: str, items: list[dict]) -> dict:
    """The listed item for `image` (its rel path or its absolute path): only an image of this dataset."""
    wanted = str(image).replace("\\", "/").strip()
    for item in items:
        if wanted in (item["rel"], item["image"].replace("\\", "/")):
            return item
    raise UserError(f"{image} is not an image of the dataset {root}.",
                    "Pick an image the dataset lists (its path relative to the dataset folder, e.g. 10_demo/a.png).")


def _write(path: Path, text: str) -> None:
    try:
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    except OSError:
        mode = 0o644
    atomic.write_text(path, text, mode=mode)
    os.chmod(path, mode)  # the umask must not narrow the user's own caption file


def edit_caption(root: Path | str, image: str, text: str) -> dict:
    """Writes the caption of one image (its .txt/.caption, else <stem>.txt beside it), atomically; one line, spaces
    collapsed. Returns the item as listed afterwards."""
    root = Path(root).expanduser()
    item = _item_for(root, image, list_captions(root))
    path = Path(item["caption_file"]) if item["caption_file"] else Path(item["image"]).with_suffix(".txt")
    if not item["caption_file"] and (path.exists() or path.is_symlink()):
        raise UserError(f"{path.name} is there but is not a regular file inside the dataset; it is never written.",
                        "Remove it, or replace it with a text file.")
    _write(path, " ".join(str(text).split()) + "\n")  # LF on every OS, like the other captions
    return {**item, "caption": " ".join(str(text).split()), "caption_file": str(path), "error": ""}


def remove_tag(root: Path | str, tag: str) -> dict:
    """Removes `tag` (compared trimmed, exactly) from every caption that holds it; the other tags, their order and
    spacing are kept. Returns {"tag", "changed": [rel]}."""
    root = Path(root).expanduser()
    tag = str(tag).strip()
    if not tag:
        raise UserError("No tag was given.", "Pick a tag from the frequencies.")
    changed = []
    for item in list_captions(root):
        if not item["caption_file"] or item["error"] or tag not in split_tags(item["caption"]):
            continue
        kept = [part for part in item["caption"].split(",") if part.strip() != tag]
        text = ",".join(kept).strip().strip(",").strip()
        _write(Path(item["caption_file"]), text + "\n")
        changed.append(item["rel"])
    return {"tag": tag, "changed": changed}


def summary_text(tags: list, limit: int = 30) -> str:
    """'tag (n), tag (n), ...': the most frequent tags, for the CLI and the tab."""
    shown = ", ".join(f"{t} ({n})" for t, n in tags[:limit])
    more = f", and {len(tags) - limit} more" if len(tags) > limit else ""
    return (shown + more) if tags else "(no tags)"
