"""`cloudlora dataset caption|tags`: caption a dataset on this machine (WD14 tags or Florence-2 sentences, in the
trainer's environment) and review its captions (tag frequencies, one tag removed everywhere, the trigger check).
The same functions as the Datasets panel and the REST routes (assets/captioning.py, assets/captions.py)."""
from __future__ import annotations

import argparse
import sys

from .. import display
from ..assets import captioners, captioning, captions
from ..assets.progress import Cancelled, format_duration
from .output import add_json_flag, print_json


def add_actions(dsub) -> None:
    """Adds `caption` and `tags` to the `dataset` command's actions."""
    cap = dsub.add_parser("caption", help="write captions with a captioner on this machine (WD14 tags or "
                                          "Florence-2 sentences), then print the tag frequencies")
    cap.add_argument("path", metavar="DIR|NAME", help="the dataset folder, a .zip, or the name of a folder in the "
                                                      "data folder's imports/")
    cap.add_argument("--with", dest="captioner", required=True, choices=sorted(captioners.CAPTIONERS),
                     help="wd14: tags (ONNX tagger); florence2: sentences")
    cap.add_argument("--mode", choices=captioning.MODES, default="keep",
                     help="; ".join(f"{k}: {v}" for k, v in captioning.MODE_HELP.items()) + " (default: keep)")
    cap.add_argument("--threshold", type=float, default=0.35, help="wd14: general tags at or above it (0.35)")
    cap.add_argument("--character-threshold", type=float, default=0.85,
                     help="wd14: character tags at or above it (0.85)")
    cap.add_argument("--exclude", default="", help="wd14: tags never written, comma-separated")
    cap.add_argument("--detail", choices=captioning.DETAILS, default="short", help="florence2: sentence length")
    cap.add_argument("--device", choices=captioning.DEVICES, default="auto", help="auto: the GPU when there is one")
    cap.add_argument("--setup", action="store_true", help="create the trainer environment first when it does not "
                                                          "exist yet (torch and the trainer's packages, a few GB)")
    add_json_flag(cap)
    cap.set_defaults(func=run_caption)
    tags = dsub.add_parser("tags", help="a dataset's tag frequencies and the captions without their trigger word; "
                                        "--remove TAG takes a tag out of every caption")
    tags.add_argument("path", metavar="DIR|NAME", help="the dataset folder, a .zip, or the name of a folder in the "
                                                       "data folder's imports/")
    tags.add_argument("--remove", metavar="TAG", help="remove this tag from every caption (the rest is kept)")
    tags.add_argument("--top", type=int, default=40, help="how many tags to print (default 40)")
    add_json_flag(tags)
    tags.set_defaults(func=run_tags)


def _print_progress(event: dict) -> None:
    kind = event.get("event")
    if kind == "start":
        print(f"Captioning {event.get('total', 0)} image(s) with {event.get('captioner', '')} on "
              f"{event.get('device', '?')}.", file=sys.stderr, flush=True)
    elif kind in ("image", "skipped"):
        eta = event.get("eta_s")
        left = f", {format_duration(float(eta))} left" if eta is not None else ""
        what = (display.name(event.get("caption", "")) if kind == "image" and event.get("written")
                else "kept" if kind == "image" else f"skipped: {display.name(event.get('reason', ''))}")
        print(f"[{event.get('done', '?')}/{event.get('total', '?')}{left}] {display.name(event.get('image', ''))}: "
              f"{what}", file=sys.stderr, flush=True)


def run_caption(args: argparse.Namespace) -> int:
    root = captions.dataset_folder(args.path)
    opts = captioning.CaptionOptions(args.captioner, args.mode, args.threshold, args.character_threshold,
                                     args.exclude, args.detail, args.device).check()
    if not captioners.is_cached(args.captioner):
        print(captioners.size_note(args.captioner), file=sys.stderr, flush=True)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    python = captioning.trainer_python(setup=args.setup, log=log)
    try:
        summary = captioning.caption_dataset(root, opts, python=python, on_event=_print_progress, log=log)
    except (Cancelled, KeyboardInterrupt):
        print("Interrupted: the captions written so far are kept; run it again (mode keep finishes the rest).",
              file=sys.stderr)
        return 130
    if args.json:
        print_json(summary)
        return 0
    tags = sorted((summary.get("tags") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    print(f"Captioned {summary.get('images', 0)} image(s) in {display.name(root)}: {summary.get('written', 0)} "
          f"written, {summary.get('kept', 0)} kept, {float(summary.get('seconds', 0)):.0f} s.")
    print(f"Tags: {captions.summary_text(tags)}")
    _print_trigger(captions.review(root)["trigger"])
    print(f"Review: cloudlora dataset tags {display.name(root)}   (--remove TAG takes one out of every caption)")
    return 0


def _print_trigger(check: dict) -> None:
    for m in check["missing"]:
        print(f"warning: {display.name(m['rel'])}: the caption lacks the trigger word '{display.name(m['trigger'])}'")
    if check["uncaptioned"]:
        print(f"{len(check['uncaptioned'])} image(s) without a caption (training uses the trigger word alone).")


def run_tags(args: argparse.Namespace) -> int:
    root = captions.dataset_folder(args.path)
    removed = captions.remove_tag(root, args.remove) if args.remove else None
    r = captions.review(root)
    if args.json:
        print_json({"root": r["root"], "tags": r["tags"], "trigger": r["trigger"], "removed": removed})
        return 0
    if removed is not None:
        print(f"Removed '{display.name(removed['tag'])}' from {len(removed['changed'])} caption(s).")
    print(f"{len(r['items'])} image(s) in {display.name(root)}; "
          f"{sum(1 for i in r['items'] if i['caption'])} with a caption.")
    width = max((len(t) for t, _ in r["tags"][:args.top]), default=3)
    for tag, n in r["tags"][:args.top]:
        print(f"  {display.name(tag):<{width}}  {n}")
    if len(r["tags"]) > args.top:
        print(f"  ... and {len(r['tags']) - args.top} more (--top N)")
    _print_trigger(r["trigger"])
    return 0
