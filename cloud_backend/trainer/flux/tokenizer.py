"""FLUX.1's tokenizers, offline: CLIP-L's (built from the shipped CLIP BPE file, data/tokenizer.py) and T5-XXL's.

T5's is the `tokenizers` file shipped gzipped in vocab/ (Apache-2.0, see vocab/LICENSE-t5), unpacked once into the
cache folder; the fast tokenizer reads it without sentencepiece or the hub. Lengths follow sd-scripts
(library/strategy_flux.py): CLIP 77 tokens, T5 512 for FLUX.1-dev and 256 for schnell (t5xxl_max_token_length).
Check: "Hello world" -> [8774, 296, 1] (</s> = 1, <pad> = 0), as google/t5-v1_1-xxl tokenizes it.
"""
from __future__ import annotations

import functools
import gzip
import json
import os
from pathlib import Path

from ..data.tokenizer import default_cache_dir, load_tokenizer

T5_FILE = Path(__file__).resolve().parent / "vocab" / "t5-tokenizer.json.gz"
T5_MAX_LENGTH = {"dev": 512, "schnell": 256}
T5_CONFIG = {"tokenizer_class": "T5TokenizerFast", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
             "model_max_length": 512, "legacy": False, "clean_up_tokenization_spaces": True}


def t5_tokenizer_dir(cache_dir: Path | str | None = None) -> Path:
    """A Hugging Face tokenizer folder for T5-XXL (tokenizer.json + tokenizer_config.json), made once."""
    folder = (Path(cache_dir) if cache_dir else default_cache_dir()) / "t5-xxl"
    if not ((folder / "tokenizer.json").is_file() and (folder / "tokenizer_config.json").is_file()):
        folder.mkdir(parents=True, exist_ok=True)
        # Temporary names, then rename: a parallel process never reads half a file.
        tmp = folder / f"tokenizer.json.{os.getpid()}"
        tmp.write_bytes(gzip.decompress(T5_FILE.read_bytes()))
        tmp.replace(folder / "tokenizer.json")
        tmp = folder / f"tokenizer_config.json.{os.getpid()}"
        tmp.write_text(json.dumps(T5_CONFIG, indent=2), encoding="utf-8")
        tmp.replace(folder / "tokenizer_config.json")
    return folder


def load_t5_tokenizer(cache_dir: Path | str | None = None):
    return _load_t5(str(t5_tokenizer_dir(cache_dir)))


@functools.lru_cache(maxsize=4)
def _load_t5(folder: str):
    try:  # transformers 4.x: the fast class by name; 5.x folds it into T5Tokenizer (tokenizers-backed)
        from transformers import T5TokenizerFast as cls
    except ImportError:
        from transformers import T5Tokenizer as cls
    return cls.from_pretrained(folder, local_files_only=True)


def flux_tokenizers(cache_dir: Path | str | None = None) -> list:
    """[CLIP-L tokenizer, T5 tokenizer], in text-encoder order."""
    return [load_tokenizer("clip-l", cache_dir), load_t5_tokenizer(cache_dir)]
