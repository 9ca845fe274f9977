"""The CLIP tokenizers are built offline from CLIP's BPE file (shipped with the trainer) and match the real ones."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cloudlora_backend.trainer.data import tokenizer

# Runs again under every transformers of TRANSFORMERS_VARIANTS (tools/test.sh): text-encoder LoRA and loading.
pytestmark = pytest.mark.transformers_matrix


def test_a_photo_of_a_cat_tokenizes_to_clips_ids(tmp_path):
    tok = tokenizer.load_tokenizer("clip-l", cache_dir=tmp_path)
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(tok) == tokenizer.VOCAB_SIZE == 49408
    assert tok.model_max_length == 77


def test_sdxls_second_tokenizer_pads_with_the_exclamation_mark_like_the_real_one(tmp_path):
    first, second = tokenizer.tokenizers_for("sdxl", cache_dir=tmp_path)
    padded_1 = first("a cat", padding="max_length", max_length=77).input_ids
    padded_2 = second("a cat", padding="max_length", max_length=77).input_ids
    assert padded_1[:4] == padded_2[:4] == [49406, 320, 2368, 49407]
    assert set(padded_1[4:]) == {49407}  # CLIP-L pads with <|endoftext|>
    assert set(padded_2[4:]) == {0}  # OpenCLIP bigG (tokenizer_2) pads with "!"
    assert second.pad_token == "!" and first.pad_token == "<|endoftext|>"


def test_the_vocabulary_has_byte_tokens_merges_and_the_two_specials_in_clips_order(tmp_path):
    folder = tokenizer.tokenizer_dir("clip-l", cache_dir=tmp_path)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["!"] == 0 and vocab["!</w>"] == 256
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    merges = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version") and len(merges) == 1 + 48894


def test_the_tokenizer_needs_no_open_clip_package(tmp_path):
    # open-clip-torch pulls torchvision, which moves torch: the vocabulary ships with the trainer instead.
    code = ("import importlib.util, sys; from cloudlora_backend.trainer.data import tokenizer as t; "
            f"t.load_tokenizer('clip-l', cache_dir={str(tmp_path)!r}); "
            "print('open_clip' in sys.modules, importlib.util.find_spec('open_clip') is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"], "the trainer environment must not need open-clip-torch"
