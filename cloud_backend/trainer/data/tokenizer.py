"""The CLIP tokenizers for SD1.5 and SDXL, built offline from CLIP's BPE file, which ships with the trainer.

No hub access: `vocab/bpe_simple_vocab_16e6.txt.gz` (OpenAI CLIP's file, as the open-clip-torch wheel carries it;
MIT, see vocab/LICENSE-open_clip) holds CLIP's 48,894 BPE merges, from which the standard 49,408-token `vocab.json`
and `merges.txt` follow (byte tokens, byte+"</w>" tokens, the merges, two specials). Shipping the 1.3 MB file
instead of depending on open-clip-torch keeps its dependency chain (torchvision, which moves torch) out of every
trainer environment.
"""
from __future__ import annotations

import functools
import gzip
import json
import os
from pathlib import Path

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408
N_MERGES = 49152 - 256 - 2  # what CLIP's SimpleTokenizer reads from the file
MODEL_MAX_LENGTH = 77
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# SD1.5's and SDXL's first tokenizer pad with <|endoftext|>; SDXL's tokenizer_2 (OpenCLIP bigG) pads with "!" (id 0).
PAD_TOKEN = {"clip-l": EOS, "openclip-bigg": "!"}


def bpe_path() -> Path:
    """CLIP's BPE merges file, shipped beside this module."""
    return Path(__file__).resolve().parent / "vocab" / BPE_FILE


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable-character table."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def build_vocab_files(out_dir: Path) -> Path:
    """Writes vocab.json and merges.txt (the Hugging Face CLIP format) into out_dir; returns out_dir."""
    lines = gzip.open(bpe_path()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]
    byte_tokens = list(_bytes_to_unicode().values())
    tokens = byte_tokens + [t + "</w>" for t in byte_tokens] + ["".join(m) for m in merges] + [BOS, EOS]
    if len(tokens) != VOCAB_SIZE:
        raise RuntimeError(f"{bpe_path()} gave {len(tokens)} tokens, not CLIP's {VOCAB_SIZE}")
    out_dir.mkdir(parents=True, exist_ok=True)
    # Write to temporary names and rename, so a parallel process never reads half a file.
    tmp_vocab, tmp_merges = out_dir / f"vocab.json.{os.getpid()}", out_dir / f"merges.txt.{os.getpid()}"
    tmp_vocab.write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False), encoding="utf-8")
    tmp_merges.write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
    tmp_merges.replace(out_dir / "merges.txt")
    tmp_vocab.replace(out_dir / "vocab.json")
    return out_dir


def default_cache_dir() -> Path:
    base = os.environ.get("CLOUDLORA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cloudlora"
    )
    return Path(base) / "clip-tokenizer"


def tokenizer_dir(kind: str = "clip-l", cache_dir: Path | str | None = None) -> Path:
    """A Hugging Face tokenizer folder (vocab.json, merges.txt, tokenizer_config.json) for `kind`, built once."""
    if kind not in PAD_TOKEN:
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of {sorted(PAD_TOKEN)}")
    folder = (Path(cache_dir) if cache_dir else default_cache_dir()) / kind
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": PAD_TOKEN[kind],
        "model_max_length": MODEL_MAX_LENGTH,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": True,
        "add_prefix_space": False,
        "errors": "replace",
    }
    config_path = folder / "tokenizer_config.json"
    if not ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file() and config_path.is_file()):
        build_vocab_files(folder)
        tmp = folder / f"tokenizer_config.json.{os.getpid()}"
        tmp.write_text(json.dumps(config, indent=2), encoding="utf-8")
        tmp.replace(config_path)
    return folder


def load_tokenizer(kind: str = "clip-l", cache_dir: Path | str | None = None):
    """A transformers CLIPTokenizer. kind: "clip-l" (SD1.5, SDXL's first) or "openclip-bigg" (SDXL's second).

    One instance per kind and folder per process: tokenizers are stateless here and parsing the vocabulary costs.
    """
    return _load_tokenizer(kind, str(tokenizer_dir(kind, cache_dir)))


@functools.lru_cache(maxsize=8)
def _load_tokenizer(kind: str, folder: str):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(folder, local_files_only=True)


def tokenizers_for(family: str, cache_dir: Path | str | None = None) -> list:
    """The tokenizer list in text-encoder order: [clip-l] for sd15, [clip-l, openclip-bigg] for sdxl."""
    if family == "sdxl":
        return [load_tokenizer("clip-l", cache_dir), load_tokenizer("openclip-bigg", cache_dir)]
    return [load_tokenizer("clip-l", cache_dir)]
