"""Tags: a WD14 tagger (SmilingWolf's wd-*-tagger-v3 family) run by onnxruntime.

The model folder holds `model.onnx` (input NHWC float32 [batch, S, S, 3], BGR, 0-255; output [batch, n_tags]
probabilities) and `selected_tags.csv` (tag_id,name,category,count; category 9 = rating, 4 = character,
0 = general). As the WD14 tools do: the image is pasted on white, padded to a square, resized to S; general and
character tags have their own thresholds; rating tags are left out; underscores become spaces except in kaomoji
(`^_^`, `>_<`, ...). The caption lists character tags first, then general tags, each by falling confidence.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

MODEL_FILE, TAGS_FILE = "model.onnx", "selected_tags.csv"
RATING, GENERAL, CHARACTER = 9, 0, 4
# The kaomoji whose underscores are part of the face (the list SmilingWolf's wd-tagger space keeps as they are).
KAOMOJIS = {"0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9", ">_o", "@_@",
            "^_^", "o_o", "u_u", "x_x", "|_|", "||_||"}


class CaptionerError(ValueError):
    """A captioner's files are missing or unusable; the message names the file and the fix."""


@dataclass
class TagOptions:
    threshold: float = 0.35  # general tags at or above it are kept
    character_threshold: float = 0.85  # character tags at or above it are kept
    exclude: list[str] = field(default_factory=list)  # tags never written (either spelling: "long hair"/"long_hair")


def tag_text(name: str) -> str:
    """'long_hair' -> 'long hair'; kaomoji keep their underscores."""
    return name if name in KAOMOJIS else name.replace("_", " ")


def read_tags(path: Path) -> tuple[list[str], np.ndarray]:
    """Tag names (as written in captions) and categories from selected_tags.csv."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        names = [tag_text(r["name"]) for r in rows]
        cats = np.array([int(r["category"]) for r in rows])
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise CaptionerError(f"{path} is not a WD14 selected_tags.csv (columns tag_id,name,category,count): {err}. "
                             "Use the selected_tags.csv that comes with the tagger's model.onnx.") from err
    if not names:
        raise CaptionerError(f"{path} lists no tags; use the selected_tags.csv that comes with the tagger.")
    return names, cats


def check_folder(model_dir: Path) -> None:
    missing = [n for n in (MODEL_FILE, TAGS_FILE) if not (model_dir / n).is_file()]
    if missing:
        raise CaptionerError(f"The WD14 tagger folder {model_dir} has no {' or '.join(missing)}: put the tagger's "
                             f"{MODEL_FILE} and {TAGS_FILE} there (e.g. from SmilingWolf/wd-vit-tagger-v3).")


def providers(device: str) -> tuple[list[str], str]:
    """onnxruntime's execution providers for `device` (auto | cpu | cuda) and the device actually used."""
    import onnxruntime as ort

    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise CaptionerError("--device cuda: this onnxruntime has no CUDA provider; install onnxruntime-gpu in the "
                             "trainer environment, or use --device auto (CPU here).")
    if device in ("cuda", "auto") and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda"
    return ["CPUExecutionProvider"], "cpu"


def to_input(image: Image.Image, size: int) -> np.ndarray:
    """The tagger's input for one image: [size, size, 3] float32 BGR 0-255, on white, padded square."""
    image = image.convert("RGBA")
    canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
    canvas.alpha_composite(image)
    image = canvas.convert("RGB")
    side = max(image.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    if side != size:
        square = square.resize((size, size), Image.BICUBIC)
    return np.asarray(square, dtype=np.float32)[:, :, ::-1].copy()  # RGB -> BGR


class Wd14Tagger:
    name = "wd14"

    def __init__(self, model_dir: Path, device: str = "auto", options: TagOptions | None = None):
        import onnxruntime as ort

        model_dir = Path(model_dir)
        check_folder(model_dir)
        self.options = options or TagOptions()
        self.names, self.categories = read_tags(model_dir / TAGS_FILE)
        provider_list, self.device = providers(device)
        try:
            self.session = ort.InferenceSession(str(model_dir / MODEL_FILE), providers=provider_list)
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for a broken file
            raise CaptionerError(f"{model_dir / MODEL_FILE} cannot be loaded by onnxruntime ({err}); download the "
                                 "tagger's model.onnx again.") from err
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.size = inp.shape[1] if isinstance(inp.shape[1], int) else 448
        n_out = self.session.get_outputs()[0].shape[-1]
        if isinstance(n_out, int) and n_out != len(self.names):
            raise CaptionerError(f"{model_dir / MODEL_FILE} has {n_out} outputs but {TAGS_FILE} lists "
                                 f"{len(self.names)} tags: the two files come from different taggers.")
        self.excluded = {tag_text(t.strip()).lower() for t in self.options.exclude if t.strip()}

    def probabilities(self, image: Image.Image) -> np.ndarray:
        batch = to_input(image, self.size)[None]
        return np.asarray(self.session.run(None, {self.input_name: batch})[0][0], dtype=np.float32)

    def caption(self, image: Image.Image) -> list[str]:
        """The tags for one image: characters, then general tags, each by falling confidence."""
        probs = self.probabilities(image)
        out = []
        for category, threshold in ((CHARACTER, self.options.character_threshold), (GENERAL, self.options.threshold)):
            picked = np.nonzero((self.categories == category) & (probs >= threshold))[0]
            for i in sorted(picked, key=lambda i: -probs[i]):
                if self.names[i].lower() not in self.excluded:
                    out.append(self.names[i])
        return out
