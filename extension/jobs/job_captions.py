"""A job that captions its dataset first (`caption = "wd14" | "florence2"` in its TOML; the trainer's
captions/stage.py): the captioner's files for the job's captioner channel before, and the captions it wrote after.

- Before: `prepare(kind, say)` downloads the captioner once into <data dir>/captioners/<kind>/ (assets/captioners.py,
  resumable, its size said first). A local job's runner does it in the background (the job says "Getting the
  captioner" with its progress) and links the folder as input/data/captioner/ (local_backend/runner.py). A SageMaker
  job needs it before it is created: `upload` sends it once to the store under models/_captioners/<kind>/ (the
  SageMaker role reads models/* already, and no model name starts with "_"); the job runs with network isolation,
  so the container never downloads anything itself.
- After: `apply(rec, model_dir, settings, store)` writes the job's model/captions/** into the local copy of the
  dataset and uploads that folder again, which makes the captions the dataset's new version in the store (the same
  name; unchanged images are not sent again). A caption changed on this machine since the upload is kept and named,
  never overwritten; nothing outside the dataset folder is written. The local copy is the folder this machine
  uploaded the dataset from (assets/datasets.py `local_folder`), else a new copy downloaded from the store into
  <data dir>/imports/.
"""
from __future__ import annotations

import json
import time
from pathlib import Path, PurePosixPath
from typing import Callable

from ..errors import UserError
from .records import JobRecord

STORE_PREFIX = "models/_captioners/"


def wanted(config_text: str) -> str:
    """The captioner a job's TOML asks for ("wd14" | "florence2"), "" for none."""
    from .results.config_values import flatten

    try:
        return str(flatten(config_text).get("caption") or "").strip()
    except Exception:  # noqa: BLE001 - a config that does not parse is refused by validation, with its words
        return ""


def prepare(kind: str, say: Callable[[str], None] = lambda s: None, progress=None) -> Path:
    """The captioner's local folder, downloaded once (said in words with its size; `progress` gets the bytes)."""
    from ..assets import captioners

    if not captioners.is_cached(kind):
        say(f"Getting the captioner ({captioners.size_note(kind)})")
    return captioners.ensure(kind, announce=say, progress=progress)


def store_prefix(kind: str) -> str:
    return f"{STORE_PREFIX}{kind}/"


def upload(store, kind: str, say: Callable[[str], None] = lambda s: None) -> str:
    """Puts the captioner's files in the store once (identical objects are skipped); returns the channel's prefix."""
    from ..assets import captioners, transfer

    folder = prepare(kind, say, progress=_every(2.0, say, "Getting the captioner"))
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != captioners.COMPLETE)
    if not files:
        raise UserError(f"The captioner folder {folder} is empty.", f"Delete it; it is downloaded again: {folder}")
    say(f"Sending the captioner to the store ({len(files)} file(s), once)")
    sending = _every(2.0, say, "Sending the captioner to the store")
    for path in files:
        transfer.upload_file(store, store_prefix(kind) + path.relative_to(folder).as_posix(), path, progress=sending)
    return store_prefix(kind)


def _every(seconds: float, say: Callable[[str], None], what: str):
    """A byte-progress callback that says `what: <progress>` at most every `seconds` (a tab or a terminal line)."""
    last = [0.0]

    def progress(p) -> None:
        now = time.monotonic()
        if now - last[0] >= seconds:
            last[0] = now
            say(f"{what}: {p.text()}")

    return progress


def _caption_files(captions: Path) -> list[str]:
    """The caption files the job wrote (captions.json's "files"), each a safe relative .txt path."""
    try:
        index = json.loads((captions / "captions.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"The job's captions index {captions / 'captions.json'} cannot be read ({err}).",
                        "Pull the job again; if it stays, caption the dataset locally (`cloudlora dataset caption`).")
    out = []
    for rel in index.get("files") or [] if isinstance(index, dict) else []:
        p = PurePosixPath(str(rel).replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts or p.suffix.lower() not in (".txt", ".caption") or len(p.parts) > 8:
            raise UserError(f"The job's captions name {rel!r}, which is not a caption file inside the dataset; "
                            "nothing was written.", "Check the job's output; caption the dataset locally instead.")
        out.append(p.as_posix())
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8-sig", "replace").strip()
    except FileNotFoundError:
        return None


def _stored(store, key: str) -> str | None:
    try:
        return store.get_bytes(key).decode("utf-8-sig", "replace").strip()
    except FileNotFoundError:
        return None


def _local_copy(store, name: str) -> Path:
    """This machine's folder of the dataset (the one it was uploaded from), else a copy made from the store."""
    from ..assets import dataset_import, datasets

    folder = datasets.local_folder(store, name)
    if folder is not None:
        return folder
    root = dataset_import.new_folder(name)
    prefix = f"datasets/{name}/"
    for info in store.list(prefix):
        rel = info.key[len(prefix):]
        if rel and rel != "manifest.json" and not rel.startswith("."):
            store.download(info.key, root / rel)
    return root


def apply(rec: JobRecord, model_dir: Path, settings, store) -> dict | None:
    """Brings a captioning job's captions into the dataset (see the module's docstring); None when it wrote none."""
    from ..assets import datasets
    from .. import atomic

    captions = model_dir / "captions"
    if not (captions / "captions.json").is_file():
        return None
    name = rec.spec.dataset
    files = _caption_files(captions)
    root = _local_copy(store, name).resolve()
    written, kept = [], []
    for rel in files:
        new = _read(captions / rel)
        target = root / rel
        if new is None or target.is_symlink() or not target.parent.is_dir() or \
                not target.resolve().is_relative_to(root):
            continue  # only beside an image of this dataset, never through a link
        local = _read(target)
        if local == new:
            continue
        # Written only where the local caption is what the job started from (or missing): an edit made here since
        # the upload is the user's, and stays.
        if local is not None and local != _stored(store, f"datasets/{name}/{rel}"):
            kept.append(rel)
            continue
        atomic.write_text(target, new + "\n")
        written.append(rel)
    result = datasets.upload_dataset(store, root, name=name)
    return {"dataset": name, "folder": str(root), "written": written, "kept": kept,
            "version": result.get("sha256", ""), "files_sent": result.get("files_sent", 0)}


def summary_text(applied: dict) -> str:
    text = (f"{len(applied['written'])} caption(s) from the job are now in dataset '{applied['dataset']}' "
            f"(a new version in the store) and in {applied['folder']}")
    if applied["kept"]:
        shown = ", ".join(applied["kept"][:5]) + (" ..." if len(applied["kept"]) > 5 else "")
        text += f"; kept your own edits of {len(applied['kept'])} caption(s): {shown}"
    return text + "."
