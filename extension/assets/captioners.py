"""The captioners' weights: which hub repo and files each captioner needs, cached once in <data dir>/captioners/<name>/.

- `wd14` (tags): SmilingWolf/wd-vit-tagger-v3, `model.onnx` + `selected_tags.csv` (the trainer side runs it with
  onnxruntime).
- `florence2` (sentences): florence-community/Florence-2-base, the checkpoint that transformers' native
  Florence2ForConditionalGeneration loads (config, weights, tokenizer and processor files).

The files come through the same resumable download as base models (resumable_download.download: HTTP Range, the
hub's sha256 checked), from HF_ENDPOINT when it is set. Their size is said before the first download: `plan` lists
them with their sizes from the hub; `APPROX_BYTES` is what the tab shows before it asks the hub anything. A finished
download is marked complete, so it is never fetched again (and an interrupted one resumes).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from .. import atomic, private_files
from ..errors import UserError
from ..settings import data_dir
from .progress import ProgressCallback, format_bytes

COMPLETE = ".cloudlora-complete"
WANTED_SUFFIXES = (".json", ".safetensors", ".txt", ".model", ".onnx", ".csv", ".jinja")  # not README.md, .gitattributes, .bin


@dataclass(frozen=True)
class Captioner:
    name: str
    title: str
    repo: str
    files: tuple[str, ...]  # () = every weight, config and tokenizer file of the repo
    approx_bytes: int
    kind: str  # "tags" | "sentences"
    revision: str = "main"


CAPTIONERS = {
    "wd14": Captioner("wd14", "Tags: WD14 ViT tagger v3 (ONNX)", "SmilingWolf/wd-vit-tagger-v3",
                      ("model.onnx", "selected_tags.csv"), 379_000_000, "tags"),
    "florence2": Captioner("florence2", "Sentences: Florence-2 base", "florence-community/Florence-2-base", (),
                           930_000_000, "sentences"),
}


def get(name: str) -> Captioner:
    try:
        return CAPTIONERS[name]
    except KeyError:
        raise UserError(f"There is no captioner '{name}'.", f"Use one of: {', '.join(CAPTIONERS)}.") from None


def captioners_dir() -> Path:
    return data_dir() / "captioners"


def model_dir(name: str) -> Path:
    return captioners_dir() / get(name).name


def is_cached(name: str) -> bool:
    return (model_dir(name) / COMPLETE).is_file()


def size_note(name: str) -> str:
    """What the tab and the CLI say before the first use: the download's size, or that it is here already."""
    c = get(name)
    if is_cached(name):
        return f"{c.title}: downloaded already ({model_dir(name)})."
    return f"{c.title}: about {format_bytes(c.approx_bytes)} to download once (from {c.repo}), then cached."


def plan(name: str, token: str = "") -> list:
    """The files to download, with their sizes and sha256 from the hub (hub_source.RemoteFile)."""
    from .hub_source import Source, repo_files

    c = get(name)
    files = repo_files(Source("hub", repo=c.repo, revision=c.revision), token)
    if c.files:
        names = {f.name: f for f in files}
        missing = [n for n in c.files if n not in names]
        if missing:
            raise UserError(f"{c.repo} has no {', '.join(missing)} (revision {c.revision}).",
                            "Check HF_ENDPOINT (a mirror must hold the repo), or try again later.")
        return [names[n] for n in c.files]
    wanted = [f for f in files if f.name.lower().endswith(WANTED_SUFFIXES) and not f.name.startswith(".")
              and f.name.lower() != "readme.md"]
    if not any(f.name.endswith(".safetensors") for f in wanted):
        raise UserError(f"{c.repo} holds no .safetensors weights.", "Check HF_ENDPOINT, or try again later.")
    return wanted


def download_size(name: str, token: str = "") -> int:
    return sum(int(f.size or 0) for f in plan(name, token))


def ensure(name: str, *, token: str = "", progress: ProgressCallback | None = None,
           cancel: threading.Event | None = None, announce=None) -> Path:
    """The captioner's folder, downloading what is missing first (resumable). `announce(text)` is told the size
    before the first byte. Raises UserError (network, 404, disk space) with the fix."""
    from .hub_source import Source, resolve_url
    from .resumable_download import download

    c = get(name)
    folder = model_dir(name)
    if is_cached(name):
        return folder
    files = plan(name, token)
    total = sum(int(f.size or 0) for f in files)
    if announce:
        announce(f"Downloading {c.title} from {c.repo}: {len(files)} file(s), {format_bytes(total)} (once; cached "
                 f"in {folder}).")
    private_files.ensure_dir(folder)
    source = Source("hub", repo=c.repo, revision=c.revision)
    for f in files:
        rel = Path(f.name)
        if rel.is_absolute() or ".." in rel.parts:
            raise UserError(f"{c.repo} lists a file outside its folder ({f.name}).", "Check HF_ENDPOINT.")
        dest = folder / rel.parent
        dest.mkdir(parents=True, exist_ok=True)
        download(resolve_url(source, f.name), dest, name=rel.name, size=f.size, sha256=f.sha256, token=token,
                 source=source, progress=progress, cancel=cancel)
    atomic.write_text(folder / COMPLETE, json.dumps({"repo": c.repo, "revision": c.revision,
                                                     "files": [f.name for f in files], "bytes": total}))
    return folder


def table() -> list[dict]:
    """The captioners with their repo, approximate size and whether they are cached (CLI, REST, tab)."""
    return [{"name": c.name, "title": c.title, "kind": c.kind, "repo": c.repo, "approx_bytes": c.approx_bytes,
             "cached": is_cached(c.name), "folder": str(model_dir(c.name))} for c in CAPTIONERS.values()]
