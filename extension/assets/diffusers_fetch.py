"""A full diffusers folder repo from the hub (model_index.json at the top): the files a pipeline needs, each
downloaded resumably and checked (resumable_download.download), with one progress over the total.

What is fetched: model_index.json, and for each component it names (unet, vae, text_encoder(_2), tokenizer(_2),
scheduler, transformer, feature_extractor, ...) the component folder's configs (json, txt, tokenizer models) and one
set of weights: .safetensors without a variant, else the fp16 (or other variant) .safetensors, else .bin the same
way; sharded weights come with their index. Never fetched: .ckpt/.pt, ONNX, Flax (.msgpack), OpenVINO and
duplicate variants; the single-file checkpoints some repos keep in their root; the safety checker (training and the
WebUIs never run it; an SD 1.5 repo's is 1.2 GB): its entry in model_index.json is kept, so pass
`safety_checker=None` to diffusers' from_pretrained.

The folder lands in `models/diffusers/<repo name>` beside the checkpoint folder (never inside it: a WebUI would list
each component's weights as a checkpoint).
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import UserError
from .hub_source import RemoteFile, Source, resolve_url
from .progress import Progress, ProgressCallback, format_bytes
from .resumable_download import Downloaded, check_space, download

INDEX = "model_index.json"
SKIPPED_COMPONENTS = {"safety_checker"}
CONFIG_EXTS = (".json", ".txt", ".model")  # configs, vocab/merges, sentencepiece (T5's spiece.model)
WEIGHT_EXTS = (".safetensors", ".bin")
SHARD_RE = re.compile(r"-\d{5}-of-\d{5}")


def is_diffusers_repo(files: list[RemoteFile]) -> bool:
    return any(f.name == INDEX for f in files)


def components(index: dict) -> list[str]:
    """The component folders model_index.json names (entries ["library", "Class"] with a library)."""
    return sorted(k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and len(v) == 2
                  and v[0] and k not in SKIPPED_COMPONENTS)


def _weight_kind(name: str) -> tuple[str, str] | None:
    """(extension, variant) of a weight file or its shard index, None for anything else."""
    base = name[:-len(".index.json")] if name.endswith(".index.json") else name
    ext = next((e for e in WEIGHT_EXTS if base.endswith(e)), None)
    if ext is None:
        return None
    stem = SHARD_RE.sub("", base[:-len(ext)])
    parts = stem.split(".")
    return ext, ".".join(parts[1:]) if len(parts) > 1 else ""


def local_name(name: str) -> str:
    """The file's name on disk: a variant chosen because it was the only one (unet/x.fp16.safetensors) is saved
    under the plain name, so loading the folder needs no `variant=`; sharded weights keep their names (their
    index names them)."""
    path = PurePosixPath(name)
    kind = _weight_kind(path.name)
    if kind is None or not kind[1] or SHARD_RE.search(path.name) or path.name.endswith(".index.json"):
        return name
    ext, variant = kind
    return str(path.with_name(path.name[:-len(ext) - len(variant) - 1] + ext))


def select(files: list[RemoteFile], index: dict) -> list[RemoteFile]:
    """The files of `files` a pipeline needs (see the module's docstring), model_index.json first."""
    wanted = set(components(index))
    chosen = [f for f in files if f.name == INDEX]
    by_component: dict[str, list[RemoteFile]] = {}
    for f in files:
        path = PurePosixPath(f.name)
        if len(path.parts) == 2 and path.parts[0] in wanted:  # files directly in a component's folder
            by_component.setdefault(path.parts[0], []).append(f)
    for comp in sorted(by_component):
        weights: dict[tuple[str, str], list[RemoteFile]] = {}
        for f in by_component[comp]:
            kind = _weight_kind(PurePosixPath(f.name).name)
            if kind is not None:
                weights.setdefault(kind, []).append(f)
            elif f.name.lower().endswith(CONFIG_EXTS):
                chosen.append(f)
        preference = [(ext, variant) for ext in WEIGHT_EXTS
                      for variant in ["", *sorted(v for e, v in weights if e == ext and v)]]
        best = next((k for k in preference if k in weights), None)
        if best is not None:
            chosen.extend(weights[best])
    return chosen


def read_index(source: Source, files: list[RemoteFile], token: str, dest: Path, progress,
               cancel) -> tuple[dict, Downloaded]:
    """Downloads model_index.json into dest and reads it."""
    got = download(resolve_url(source, INDEX), dest, name=INDEX,
                   size=next((f.size for f in files if f.name == INDEX), None),
                   sha256=next((f.sha256 for f in files if f.name == INDEX), ""), token=token,
                   source=Source("hub", source.repo, INDEX, source.revision), progress=progress, cancel=cancel)
    try:
        index = json.loads(got.path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{source.repo}'s {INDEX} is not valid JSON ({err}).",
                        "It is not a usable diffusers folder: give --file NAME for a single-file checkpoint in it.") \
            from None
    if not isinstance(index, dict) or not components(index):
        raise UserError(f"{source.repo}'s {INDEX} names no components.",
                        "It is not a usable diffusers folder: give --file NAME for a single-file checkpoint in it.")
    return index, got


@dataclass
class FolderDownload:
    path: Path  # the folder
    files: list[Downloaded]
    size: int

    @property
    def bytes_received(self) -> int:
        return sum(d.bytes_received for d in self.files)

    @property
    def resumed_from(self) -> int:
        """Bytes that were already on disk: finished files and the part a resumed file started from."""
        return sum(d.size for d in self.files if d.already_there) + sum(d.resumed_from for d in self.files)

    @property
    def checked(self) -> bool:
        """Every file with a hub sha256 (the weights, LFS) matched it; at least one had one."""
        return any(d.checked for d in self.files)

    @property
    def already_there(self) -> bool:
        return all(d.already_there for d in self.files)


def _overall(progress: ProgressCallback | None, total: int, done_before: list[int], count: int, index: list[int]):
    """A per-file progress callback that reports over the whole folder."""
    if progress is None:
        return None

    def report(p: Progress) -> None:
        done = done_before[0] + p.done
        eta = (total - done) / p.rate if p.rate > 0 and total > done else p.eta
        progress(Progress(p.phase, done, total, rate=p.rate, eta=eta, item=p.item, files_done=index[0],
                          files_total=count))

    return report


def fetch_folder(source: Source, files: list[RemoteFile], dest: Path, token: str,
                 progress: ProgressCallback | None = None, cancel: threading.Event | None = None) -> FolderDownload:
    """Downloads the repo's diffusers folder into `dest` (resumable per file, sha256-checked where the hub lists
    one); a re-run downloads only what is missing."""
    dest = Path(dest).expanduser()
    index, index_file = read_index(source, files, token, dest, None, cancel)
    chosen = [f for f in select(files, index) if f.name != INDEX]
    missing = [c for c in components(index) if not any(f.name.startswith(c + "/") for f in chosen)]
    if missing:
        raise UserError(f"{source.repo} is a diffusers folder whose {INDEX} names {', '.join(missing)}, but the "
                        "repo has no files for it.",
                        f"See {source.repo}'s files on the hub; give --file NAME for a single-file checkpoint in it.")
    total = sum(f.size or 0 for f in chosen)
    there = sum(f.size or 0 for f in chosen if (dest / local_name(f.name)).is_file()
                and (dest / local_name(f.name)).stat().st_size == f.size)
    check_space(dest, total, there, f"Downloading {source.repo}")  # the whole folder, before its first weight
    done_before, at = [0], [0]
    report = _overall(progress, total, done_before, len(chosen), at)
    got: list[Downloaded] = [index_file]
    for f in chosen:
        path = PurePosixPath(local_name(f.name))
        d = download(resolve_url(source, f.name), dest.joinpath(*path.parts[:-1]), name=path.name, size=f.size,
                     sha256=f.sha256, token=token, source=Source("hub", source.repo, f.name, source.revision),
                     progress=report, cancel=cancel)
        got.append(d)
        done_before[0] += d.size
        at[0] += 1
    if progress is not None:
        progress(Progress("downloaded", total, total, item=f"{dest.name} ({format_bytes(total)})",
                          files_done=len(chosen), files_total=len(chosen)))
    return FolderDownload(dest, got, total + index_file.size)
