"""Sentences: Florence-2 through transformers (Florence2ForConditionalGeneration, transformers >= 4.56 / 5.x).

The model folder is a transformers folder in the natively supported layout (config.json with model_type
"florence2", the weights, the processor and tokenizer files), e.g. florence-community/Florence-2-base. `short` asks
for `<CAPTION>` (one sentence), `detailed` for `<DETAILED_CAPTION>` (a few sentences).
"""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from .wd14 import CaptionerError

TASKS = {"short": "<CAPTION>", "detailed": "<DETAILED_CAPTION>"}
MAX_NEW_TOKENS = {"short": 77, "detailed": 256}
NUM_BEAMS = 3  # Florence-2's own examples decode with 3 beams


def check_folder(model_dir: Path) -> None:
    config = model_dir / "config.json"
    if not config.is_file():
        raise CaptionerError(f"The Florence-2 folder {model_dir} has no config.json: put a transformers Florence-2 "
                             "folder there (e.g. florence-community/Florence-2-base: config.json, model.safetensors, "
                             "processor and tokenizer files).")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type", "")
    except (OSError, ValueError) as err:
        raise CaptionerError(f"{config} is not valid JSON ({err}); download the model folder again.") from err
    if model_type != "florence2":
        raise CaptionerError(f"{config} is a {model_type or 'unknown'!s} model, not Florence-2 (model_type "
                             "\"florence2\"); the original microsoft/Florence-2-* folders need trust_remote_code: use "
                             "the transformers-native florence-community/Florence-2-base or -large.")


class Florence2Captioner:
    name = "florence2"

    def __init__(self, model_dir: Path, device: str = "auto", detail: str = "short"):
        model_dir = Path(model_dir)
        check_folder(model_dir)  # before the imports: a wrong folder is told in a moment
        if detail not in TASKS:
            raise CaptionerError(f"detail {detail!r} is not one of {', '.join(TASKS)}")
        import torch
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        if device == "cuda" and not torch.cuda.is_available():
            raise CaptionerError("--device cuda: torch sees no CUDA GPU here; use --device auto or cpu.")
        self.device = "cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
        self.dtype = torch.float16 if self.device == "cuda" else torch.float32
        self.detail = detail
        self.max_new_tokens = dict(MAX_NEW_TOKENS)  # per detail; a long caption stops there
        try:
            self.processor = AutoProcessor.from_pretrained(model_dir)
            self.model = Florence2ForConditionalGeneration.from_pretrained(model_dir, dtype=self.dtype)
        except (OSError, ValueError) as err:
            raise CaptionerError(f"The Florence-2 folder {model_dir} cannot be loaded ({err}); download it again "
                                 "with its processor and tokenizer files.") from err
        self.model.to(self.device).eval()

    def caption(self, image: Image.Image) -> list[str]:
        """One piece: the sentence(s) Florence-2 writes for the image."""
        import torch

        task = TASKS[self.detail]
        inputs = self.processor(text=task, images=image.convert("RGB"), return_tensors="pt")
        with torch.inference_mode():
            ids = self.model.generate(
                input_ids=inputs["input_ids"].to(self.device),
                pixel_values=inputs["pixel_values"].to(self.device, self.dtype),
                max_new_tokens=self.max_new_tokens[self.detail], num_beams=NUM_BEAMS, do_sample=False)
        text = self.processor.batch_decode(ids, skip_special_tokens=True)[0]
        text = " ".join(text.replace("<pad>", " ").split())
        return [text] if text else []
