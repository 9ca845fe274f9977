"""Tiny captioners for tests and smoke runs: a WD14-signature ONNX tagger and a random-weight Florence-2 folder,
built offline (the ONNX graph is written as protobuf bytes here: no `onnx` package needed, onnxruntime runs it).

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


# --- a few ONNX protobuf messages, written by hand (wire format: field key varint, then varint or length + bytes),
# so the tiny tagger needs no `onnx` package: onnxruntime alone runs it. Field numbers are onnx.proto3's.

def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 as protobuf writes it
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _int(field: int, n: int) -> bytes:
    return _varint(field << 3) + _varint(n)


def _bytes(field: int, data: bytes | str) -> bytes:
    data = data.encode() if isinstance(data, str) else data
    return _varint(field << 3 | 2) + _varint(len(data)) + data


FLOAT, INT64 = 1, 7  # TensorProto.DataType


def _tensor(name: str, array) -> bytes:
    """TensorProto: dims 1, data_type 2, name 8, raw_data 9 (little-endian)."""
    import numpy as np

    array = np.ascontiguousarray(array)
    kind = {np.dtype(np.float32): FLOAT, np.dtype(np.int64): INT64}[array.dtype]
    return (b"".join(_int(1, d) for d in array.shape) + _int(2, kind) + _bytes(8, name)
            + _bytes(9, array.astype(array.dtype.newbyteorder("<")).tobytes()))


def _value_info(name: str, dims: list) -> bytes:
    """ValueInfoProto name 1, type 2 = TypeProto.tensor_type 1 {elem_type 1, shape 2 {dim 1 {value 1 | param 2}}}."""
    shape = b"".join(_bytes(1, _int(1, d) if isinstance(d, int) else _bytes(2, d)) for d in dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, FLOAT) + _bytes(2, shape)))


def _node(op: str, inputs: list[str], outputs: list[str], **ints: int) -> bytes:
    """NodeProto input 1, output 2, op_type 4, attribute 5 {name 1, i 3, type 20 = INT (2)}."""
    attrs = b"".join(_bytes(5, _bytes(1, k) + _int(3, v) + _int(20, 2)) for k, v in ints.items())
    return (b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs) + _bytes(4, op)
            + attrs)


def make_tiny_wd14(out: Path, tags=TINY_TAGS, size: int = SIZE) -> Path:
    """out/model.onnx (input "input" [batch, size, size, 3] float32 BGR; output "output" [batch, n] probabilities)
    and out/selected_tags.csv."""
    import numpy as np

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = np.array([t[3] for t in tags], dtype=np.float32).T  # [3, n]
    bias = np.array([t[2] for t in tags], dtype=np.float32)
    nodes = [
        _node("ReduceMean", ["input", "axes"], ["mean"], keepdims=0),  # [batch, 3]: mean B, G, R
        _node("Div", ["mean", "scale"], ["unit"]),
        _node("MatMul", ["unit", "weights"], ["logit"]),
        _node("Add", ["logit", "bias"], ["raw"]),
        _node("Clip", ["raw", "zero", "one"], ["output"]),
    ]
    inits = [_tensor("axes", np.array([1, 2], dtype=np.int64)), _tensor("scale", np.array(255.0, dtype=np.float32)),
             _tensor("weights", weights), _tensor("bias", bias), _tensor("zero", np.array(0.0, dtype=np.float32)),
             _tensor("one", np.array(1.0, dtype=np.float32))]
    # GraphProto: node 1, name 2, initializer 5, input 11, output 12.
    graph = (b"".join(_bytes(1, n) for n in nodes) + _bytes(2, "tiny_wd14") + b"".join(_bytes(5, i) for i in inits)
             + _bytes(11, _value_info("input", ["batch", size, size, 3]))
             + _bytes(12, _value_info("output", ["batch", len(tags)])))
    # ModelProto: ir_version 1 (8: every onnxruntime the lock allows reads it), graph 7, opset_import 8 {version 2}.
    model = _int(1, 8) + _bytes(7, graph) + _bytes(8, _bytes(1, "") + _int(2, 18))
    (out / "model.onnx").write_bytes(model)
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
