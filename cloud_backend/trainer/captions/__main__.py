"""`python -m cloudlora_backend.trainer.captions`: captions a dataset's images in place (the extension's local runs).

    --dataset DIR --with wd14|florence2 --model-dir DIR [--mode keep|append|replace] [--threshold 0.35]
    [--character-threshold 0.85] [--exclude "tag a,tag b"] [--detail short|detailed] [--trigger WORD]
    [--device auto|cpu|cuda]

stdout: one JSON object per line: start {total, captioner, device}; per image {done, total, image, caption, written,
eta_s} (or skipped {image, reason}, and the run goes on); summary {images, written, kept, skipped, seconds, tags}.
A failure is one {"event": "error", "message": ...} line. Exit codes: 0 done, 1 an input needs fixing (folder,
model files, option), 4 an unexpected error (traceback on stderr).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the trainer: spinning OpenMP threads slow a shared CPU

EXIT_OK, EXIT_INPUT, EXIT_BUG = 0, 1, 4


def emit(event: dict) -> None:
    print(json.dumps(event, ensure_ascii=False), flush=True)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # a bad option is an input to fix (exit 1), told as a JSON line
        emit({"event": "error", "message": f"{message} (python -m cloudlora_backend.trainer.captions --help)"})
        raise SystemExit(EXIT_INPUT)


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m cloudlora_backend.trainer.captions", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, help="a Kohya dataset root, one <repeats>_<trigger> folder, or images")
    ap.add_argument("--with", dest="captioner", required=True, choices=["wd14", "florence2"])
    ap.add_argument("--model-dir", required=True, help="wd14: model.onnx + selected_tags.csv; florence2: a "
                    "transformers folder")
    ap.add_argument("--mode", default="keep", choices=["keep", "append", "replace"],
                    help="keep: leave images that have a caption; append: add new tags to it; replace (default keep)")
    ap.add_argument("--threshold", type=float, default=0.35, help="wd14: general tags at or above it (0.35)")
    ap.add_argument("--character-threshold", type=float, default=0.85, help="wd14: character tags (0.85)")
    ap.add_argument("--exclude", default="", help='wd14: tags never written, comma-separated: "tag a,tag b"')
    ap.add_argument("--detail", default="short", choices=["short", "detailed"], help="florence2: one sentence or more")
    ap.add_argument("--trigger", default=None, help="the trigger word put first (default: each folder's own)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .run import DatasetFolderError, caption_dataset, load_captioner, targets
    from .wd14 import CaptionerError

    for name in ("threshold", "character_threshold"):
        value = getattr(args, name)
        if not 0.0 <= value <= 1.0:
            emit({"event": "error", "message": f"--{name.replace('_', '-')} {value} must be between 0 and 1 "
                                               "(a probability, e.g. 0.35)"})
            return EXIT_INPUT
    try:
        targets(args.dataset, args.trigger)  # a wrong folder fails before a model loads
        captioner = load_captioner(args.captioner, args.model_dir, device=args.device, threshold=args.threshold,
                                   character_threshold=args.character_threshold,
                                   exclude=[t for t in args.exclude.split(",") if t.strip()], detail=args.detail)
        caption_dataset(args.dataset, captioner, mode=args.mode, trigger=args.trigger, emit=emit)
        return EXIT_OK
    except (CaptionerError, DatasetFolderError) as err:
        emit({"event": "error", "message": str(err)})
        return EXIT_INPUT
    except Exception as err:  # noqa: BLE001 - every failure must reach the caller as a line
        traceback.print_exc()
        emit({"event": "error", "message": f"captioning failed unexpectedly: {type(err).__name__}: {err}"})
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
