"""Captioning as the training job's first phase (`caption = "wd14" | "florence2"` in the TOML).

The captioner comes from the job's channel input/data/captioner/ (wd14: model.onnx + selected_tags.csv; florence2:
a transformers folder; either at the channel's top or in its one sub-folder). The dataset channel may be read-only
(SageMaker), so the captions go into a working copy, ROOT/work/dataset (images hard-linked where the file system
allows, else copied; caption files copied), which the run then trains on. The caption files come back with the LoRA:
model/captions/<caption file's path relative to the dataset root> and model/captions/captions.json
({"captioner", "mode", "files": every caption file trained on, "written": those this run wrote}).
A resumed job finds ROOT/work/captioned.json and trains on the same captions without captioning again.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..config.caption_options import exclude_list
from ..data.layout import CAPTION_EXTS
from .run import caption_dataset, load_captioner, relative
from .wd14 import CaptionerError

MARKERS = {"wd14": ("model.onnx",), "florence2": ("config.json",)}


def find_captioner(channel: Path, kind: str) -> Path:
    """The folder in the captioner channel that holds `kind`'s files; CaptionerError says what is missing."""
    want = {"wd14": "the WD14 tagger's model.onnx and selected_tags.csv",
            "florence2": "a transformers Florence-2 folder (config.json, weights, processor files)"}[kind]
    if not channel.is_dir():
        raise CaptionerError(f'caption = "{kind}" needs the captioner channel {channel} with {want}; add the '
                             'captioner to the job, or remove caption from the config to train on the captions as '
                             "they are.")
    marker = MARKERS[kind][0]
    if (channel / marker).is_file():
        return channel
    found = sorted(p.parent for p in channel.rglob(marker))
    if len(found) == 1:
        return found[0]
    if not found:
        raise CaptionerError(f'The captioner channel {channel} has no {marker}: caption = "{kind}" needs {want}.')
    raise CaptionerError(f"The captioner channel {channel} holds several {marker} ({', '.join(map(str, found[:3]))}); "
                         "give the job exactly one captioner.")


def working_copy(dataset: Path, work: Path) -> None:
    """A writable copy of the dataset: hard links for images and other files where possible (no extra disk), real
    copies for caption files (rewritten in the copy only)."""
    if work.exists():
        shutil.rmtree(work)
    for folder, _dirs, files in os.walk(dataset, followlinks=True):
        target = work / Path(folder).relative_to(dataset)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            src, dst = Path(folder) / name, target / name
            if src.suffix.lower() not in CAPTION_EXTS:
                try:
                    os.link(src.resolve(), dst)
                    continue
                except OSError:
                    pass  # another file system, or no hard links here: copy
            shutil.copy2(src, dst)


def caption_stage(root: Path, cfg, dataset: Path, log=lambda msg: print(msg, flush=True)) -> Path:
    """Captions a working copy of `dataset` as cfg says and returns it (the folder to train on)."""
    work, done = root / "work" / "dataset", root / "work" / "captioned.json"
    if done.is_file() and work.is_dir():
        log(f"captions: reusing the captions of the earlier run in {work}")
        return work
    model_dir = find_captioner(root / "input" / "data" / "captioner", cfg.caption)
    working_copy(dataset, work)
    captioner = load_captioner(cfg.caption, model_dir, threshold=cfg.caption_threshold,
                               character_threshold=cfg.caption_character_threshold,
                               exclude=exclude_list(cfg.caption_exclude), detail=cfg.caption_detail)

    def progress(event: dict) -> None:
        if event["event"] == "start":
            log(f"captions: {cfg.caption} on {event['device']}, {event['total']} images, mode {cfg.caption_mode}")
        elif event["event"] == "image":
            log(f"caption {event['done']}/{event['total']} {event['image']}: {event['caption']} "
                f"(eta {event['eta_s']:.0f} s)")
        elif event["event"] == "skipped":
            log(f"caption {event['done']}/{event['total']} {event['image']} skipped: {event['reason']}")
        elif event["event"] == "summary":
            log(f"captions: {event['written']} written, {event['kept']} kept, {event['skipped']} skipped in "
                f"{event['seconds']:.1f} s")

    result = caption_dataset(work, captioner, mode=cfg.caption_mode,
                             caption_extension=cfg.caption_extension or None, emit=progress)
    del captioner
    _free_gpu()
    export(work, result["files"], result["changed"], root / "model" / "captions", cfg)
    done.write_text(json.dumps({"captioner": cfg.caption, "mode": cfg.caption_mode}), encoding="utf-8")
    return work


def export(work: Path, files: list[Path], changed: list[Path], out: Path, cfg) -> None:
    """The caption files trained on, under their dataset-relative paths, and captions.json listing them."""
    rels = [relative(f, work) for f in files]
    for f, rel in zip(files, rels):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, out / rel)
    out.mkdir(parents=True, exist_ok=True)
    (out / "captions.json").write_text(json.dumps({
        "captioner": cfg.caption, "mode": cfg.caption_mode, "files": rels,
        "written": [relative(f, work) for f in changed]}, indent=1), encoding="utf-8")


def _free_gpu() -> None:
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
