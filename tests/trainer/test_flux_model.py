"""FLUX.1 base models load from every layout users have, offline, into one BFL-layout transformer that computes
exactly what diffusers' FluxTransformer2DModel computes."""
from __future__ import annotations

import pytest
import torch

from cloudlora_backend.trainer.model.family import detect_family, detect_path, read_safetensors_header
from cloudlora_backend.trainer.model import flux_keys as K
from cloudlora_backend.trainer.flux.load import load_flux
from cloudlora_backend.trainer.flux.model import FP8, img_ids
from cloudlora_backend.trainer.model.load import ModelLoadError

from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test

TOKENIZERS = None  # the default cache folder: built once per machine, like the CLIP tokenizer


def _parts(files: dict) -> dict:
    return {p: files[p] for p in K.PARTS[1:]}


def _same_weights(a, b, atol=0.0):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    worst = max((sa[k].float() - sb[k].float()).abs().max().item() for k in sa)
    assert worst <= atol, worst


def test_flux_files_are_recognised_from_their_headers_alone(tiny_flux_path, tiny_flux_parts, tiny_flux_diffusers):
    assert detect_family(read_safetensors_header(tiny_flux_path)) == "flux"
    assert K.parts_in(read_safetensors_header(tiny_flux_path)) == ["transformer", "clip_l", "t5xxl", "ae"]
    assert detect_family(read_safetensors_header(tiny_flux_parts["transformer"])) == "flux"
    assert K.parts_in(read_safetensors_header(tiny_flux_parts["transformer"])) == ["transformer"]
    for part in ("clip_l", "t5xxl", "ae"):  # the separate files are each what they are, and no base model
        header = read_safetensors_header(tiny_flux_parts[part])
        assert K.part_of_file(header) == part
        assert detect_family(header) != "flux"
    assert detect_path(tiny_flux_diffusers) == "flux"
    arch = K.architecture(K.transformer_keys(K.shapes_of(read_safetensors_header(tiny_flux_path)))[1])
    assert (arch.depth, arch.depth_single_blocks, arch.variant) == (19, 38, "dev")  # FLUX.1-dev's real depth


def test_the_same_model_loads_from_all_in_one_fp8_bfl_with_parts_and_a_diffusers_folder(
        tiny_flux_path, tiny_flux_fp8_path, tiny_flux_parts, tiny_flux_diffusers):
    aio = load_flux(tiny_flux_path, tokenizer_cache=TOKENIZERS)
    parts = load_flux(tiny_flux_parts["transformer"], _parts(tiny_flux_parts), tokenizer_cache=TOKENIZERS)
    folder = load_flux(tiny_flux_diffusers, tokenizer_cache=TOKENIZERS)
    for a, b in zip([aio.unet, aio.vae, *aio.text_encoders], [parts.unet, parts.vae, *parts.text_encoders]):
        _same_weights(a, b)  # the same fp16 tensors, whichever files they came from
    # The diffusers folder holds the fp32 originals: the same model up to the files' fp16 rounding.
    for a, b in zip([aio.unet, aio.vae, *aio.text_encoders], [folder.unet, folder.vae, *folder.text_encoders]):
        _same_weights(a, b, atol=2e-3)
    assert aio.family == parts.family == folder.family == "flux" and aio.extra["variant"] == "dev"
    assert aio.tiny and [type(t).__name__ for t in aio.tokenizers][0] == "CLIPTokenizer"
    # Forge's fp8 all-in-one: the transformer read from float8_e4m3fn, everything else as before.
    fp8 = load_flux(tiny_flux_fp8_path, tokenizer_cache=TOKENIZERS)
    _same_weights(fp8.vae, aio.vae)
    sa, sb = fp8.unet.state_dict(), aio.unet.state_dict()
    for k in sa:
        expected = sb[k].to(FP8).float() if k.endswith(".weight") else sb[k]
        assert torch.equal(sa[k].float(), expected.float()), k


def test_the_bfl_layout_transformer_computes_exactly_what_diffusers_flux_transformer_computes(tiny_flux_diffusers):
    from diffusers import FluxTransformer2DModel

    ours = load_flux(tiny_flux_diffusers, tokenizer_cache=TOKENIZERS).unet
    theirs = FluxTransformer2DModel.from_pretrained(tiny_flux_diffusers, subfolder="transformer",
                                                    local_files_only=True)
    g = torch.Generator().manual_seed(0)
    batch, h, w, t5_tokens = 2, 4, 6, 7
    img = torch.randn(batch, h * w, 64, generator=g)
    txt = torch.randn(batch, t5_tokens, 32, generator=g)
    pooled = torch.randn(batch, 32, generator=g)
    sigma, guidance = torch.tensor([0.3, 0.8]), torch.tensor([1.0, 3.5])
    ids, txt_ids = img_ids(batch, h, w), torch.zeros(batch, t5_tokens, 3)
    with torch.no_grad():
        a = ours(img, ids, txt, txt_ids, sigma, pooled, guidance)
        b = theirs(hidden_states=img, encoder_hidden_states=txt, pooled_projections=pooled, timestep=sigma,
                   img_ids=ids[0], txt_ids=txt_ids[0], guidance=guidance).sample
    assert a.abs().mean() > 0.1
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_a_transformer_only_file_without_its_text_encoders_and_ae_is_refused_naming_the_files_to_add(
        tiny_flux_parts):
    with pytest.raises(ModelLoadError) as err:
        load_flux(tiny_flux_parts["transformer"], {"clip_l": tiny_flux_parts["clip_l"]}, tokenizer_cache=TOKENIZERS)
    message = str(err.value)
    assert "T5-XXL text encoder" in message and "autoencoder" in message and "CLIP-L" not in message.split("but")[1]
    assert "--t5xxl" in message and "--ae" in message


def test_a_file_given_as_the_wrong_part_is_refused(tiny_flux_parts):
    with pytest.raises(ModelLoadError, match="was given as the T5-XXL text encoder but holds none"):
        load_flux(tiny_flux_parts["transformer"], {**_parts(tiny_flux_parts), "t5xxl": tiny_flux_parts["ae"]},
                  tokenizer_cache=TOKENIZERS)


def test_the_t5_tokenizer_works_offline_from_the_shipped_file(tmp_path):
    from cloudlora_backend.trainer.flux.tokenizer import load_t5_tokenizer

    tok = load_t5_tokenizer(tmp_path)
    assert tok("Hello world").input_ids == [8774, 296, 1]  # as google/t5-v1_1-xxl tokenizes it
    padded = tok(["a photo of a cat"], max_length=12, padding="max_length", truncation=True)
    assert padded.input_ids[0] == [3, 9, 1202, 13, 3, 9, 1712, 1, 0, 0, 0, 0]
    assert padded.attention_mask[0] == [1] * 8 + [0] * 4
