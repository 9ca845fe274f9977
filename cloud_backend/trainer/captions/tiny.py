"""Tiny captioners for tests and smoke runs: a WD14-signature ONNX tagger and a random-weight Florence-2 folder,
built offline in well under a second each (the ONNX graph needs the `onnx` package, a test-only dependency).

The tiny tagger's output is readable: each tag's probability is a fixed bias plus weights on the image's mean
blue, green and red (0-1), so a test picks which tags an image gets by its colour.
"""
from __future__ import annotations

import csv
from pathlib import Path

# name, category (9 rating, 4 character, 0 general), bias, weights on mean (B, G, R)
TINY_TAGS = [
    ("general", 9, 0.95, (0, 0, 0)),
    ("sensitive", 9, 0.60, (0, 0, 0)),
    ("1girl", 0, 0.90, (0, 0, 0)),
    ("long_hair", 0, 0.70, (0, 0, 0)),
    ("solo", 0, 0.30, (0, 0, 0)),  # below the default 0.35
    ("^_^", 0, 0.50, (0, 0, 0)),
    ("red_theme", 0, 0.0, (0, 0, 0.9)),  # only on a red image: proves the BGR channel order
    ("blue_theme", 0, 0.0, (0.9, 0, 0)),
    ("hatsune_miku", 4, 0.90, (0, 0, 0)),
    ("kagamine_rin", 4, 0.60, (0, 0, 0)),  # above the general threshold, below the character one
]
SIZE = 448  # the v3 taggers' input side


def make_tiny_wd14(out: Path, tags=TINY_TAGS, size: int = SIZE) -> Path:
    """out/model.onnx (input "input" [batch, size, size, 3] float32 BGR; output "output" [batch, n] probabilities)
    and out/selected_tags.csv."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = np.array([t[3] for t in tags], dtype=np.float32).T  # [3, n]
    bias = np.array([t[2] for t in tags], dtype=np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["input", "axes"], ["mean"], keepdims=0),  # [batch, 3]
        helper.make_node("Div", ["mean", "scale"], ["unit"]),
        helper.make_node("MatMul", ["unit", "weights"], ["logit"]),
        helper.make_node("Add", ["logit", "bias"], ["raw"]),
        helper.make_node("Clip", ["raw", "zero", "one"], ["output"]),
    ]
    inits = [numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes"),
             numpy_helper.from_array(np.array(255.0, dtype=np.float32), "scale"),
             numpy_helper.from_array(weights, "weights"), numpy_helper.from_array(bias, "bias"),
             numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
             numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one")]
    graph = helper.make_graph(
        nodes, "tiny_wd14",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", len(tags)])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8  # readable by every onnxruntime the lock allows
    onnx.checker.check_model(model)
    onnx.save(model, out / "model.onnx")
    with open(out / "selected_tags.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["tag_id", "name", "category", "count"])
        for i, t in enumerate(tags):
            w.writerow([1000 + i, t[0], t[1], 100 - i])
    return out


def make_tiny_florence2(out: Path, seed: int = 0) -> Path:
    """A random-weight Florence2ForConditionalGeneration (64 px images, 5 image tokens, a 2-layer BART) with its
    processor: a byte-level BPE tokenizer trained here on a few words, and the CLIP image processor (PIL backend)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import BartTokenizer, Florence2Config, Florence2ForConditionalGeneration, Florence2Processor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    words = "a the girl cat dog red blue hat field photo of with on in and is standing sitting picture"
    letters = sorted(set(words.replace(" ", ""))) + ["Ġ"]
    bpe.train_from_iterator([words, "What does the image describe?", "Describe in detail what is shown in the image."],
                            trainers.BpeTrainer(vocab_size=200, initial_alphabet=letters, limit_alphabet=len(letters),
                                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>", "<image>"]))
    tok = BartTokenizer(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                        unk_token="<unk>", mask_token="<mask>", extra_special_tokens={"image_token": "<image>"})
    images = CLIPImageProcessorPil(size={"height": 64, "width": 64}, crop_size={"height": 64, "width": 64},
                                   do_center_crop=False)
    images.image_seq_length = 5  # (64 / 32)^2 patches + 1 pooled token
    processor = Florence2Processor(image_processor=images, tokenizer=tok)
    config = Florence2Config(
        vision_config=dict(depths=[1, 1, 1, 1], embed_dim=[8, 16, 16, 32], num_heads=[1, 1, 1, 1],
                           num_groups=[1, 1, 1, 1], projection_dim=32, window_size=2, max_position_embeddings=8,
                           max_temporal_embeddings=2),
        text_config=dict(model_type="bart", vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1,
                         encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                         max_position_embeddings=320, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, decoder_start_token_id=tok.eos_token_id),
        image_token_id=tok.image_token_id)
    torch.manual_seed(seed)
    Florence2ForConditionalGeneration(config).save_pretrained(out)
    processor.save_pretrained(out)
    return out
