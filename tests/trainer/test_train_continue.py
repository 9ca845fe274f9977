"""Continue training from a finished LoRA (network_weights, dim_from_weights): the new job starts from exactly the
given weights, or says why it cannot."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from cloudlora_backend.trainer.config import train_config as config
from cloudlora_backend.trainer.network import lora, network_setup
from cloudlora_backend.trainer.model.load import load_components
from tests.trainer.kohya_check import assert_a1111_loadable
from tests.trainer.test_model_lora import _randomise_adapters

from .train_helpers import SMALL, failure, make_dataset, make_job, run_entrypoint
from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test

pytestmark = pytest.mark.transformers_matrix


def _finished_lora(tmp_path, model_path, *, rank=4, alpha=2.0, te=True, conv_dim=0, dora=False, name="done"):
    """A LoRA as a finished job leaves it (random, non-zero weights)."""
    c = load_components(model_path)
    lora.add_lora(c, rank, alpha, te, conv_dim=conv_dim, conv_alpha=1.0, use_dora=dora)
    _randomise_adapters(c, seed=11)
    return lora.save_kohya(tmp_path / f"{name}.safetensors", c, rank, alpha, {"steps": 10}, save_dtype="float")


def _network_state(cfg_text, family, model_path, weights):
    c = load_components(model_path)
    cfg = config.parse(cfg_text, family)
    network_setup.build(c, cfg, weights, log=lambda m: None)
    return c, lora.kohya_state_dict(c, dtype=torch.float32)


def test_a_continued_lora_starts_from_exactly_the_given_weights(tmp_path, tiny_sd15_path):
    done = _finished_lora(tmp_path, tiny_sd15_path, rank=4, alpha=2.0, conv_dim=2, dora=True)
    text = ('network_dim = 4\nnetwork_alpha = 2\nnetwork_module = "lycoris.kohya"\n'
            'network_args = ["conv_dim=2", "conv_alpha=1", "dora_wd=True"]\n')
    c, state = _network_state(text, "sd15", tiny_sd15_path, done)
    given = load_file(str(done))
    assert set(state) == set(given)
    for key, value in given.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)
    assert all(p.requires_grad for n, p in c.unet.named_parameters() if "lora_" in n)


def test_dim_from_weights_takes_the_files_modules_ranks_and_alphas_and_keeps_its_text_encoder_frozen(
        tmp_path, tiny_sd15_path):
    done = _finished_lora(tmp_path, tiny_sd15_path, rank=8, alpha=3.0, te=True, conv_dim=2)
    text = "network_dim = 16\nnetwork_alpha = 1\nnetwork_train_unet_only = true\n"
    with pytest.raises(lora.LoraFileError, match="dim_from_weights = true"):
        _network_state(text, "sd15", tiny_sd15_path, done)
    c, state = _network_state(text + "dim_from_weights = true\nnetwork_weights = \"done\"\n", "sd15",
                              tiny_sd15_path, done)
    given = load_file(str(done))
    assert set(state) == set(given)
    assert state["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"].shape[0] == 2  # conv rank from the file
    assert state["lora_unet_mid_block_attentions_0_proj_in.lora_down.weight"].shape[0] == 8
    assert float(state["lora_unet_mid_block_attentions_0_proj_in.alpha"]) == 3.0
    te = [p for n, p in c.text_encoders[0].named_parameters() if "lora_" in n]
    assert te and not any(p.requires_grad for p in te)  # kept, so the continued LoRA still carries them


@pytest.mark.parametrize("case,words", [
    ("rank", ["rank 4", "network_dim", "dim_from_weights"]),
    ("family", ["SDXL LoRA", "SD 1.5", "same family"]),
    ("loha", ["LoHa", "Kohya LoRA"]),
])
def test_a_lora_that_does_not_fit_is_refused_with_the_fix(case, words, tmp_path, tiny_sd15_path, tiny_sdxl_path):
    if case == "family":
        done = _finished_lora(tmp_path, tiny_sdxl_path, te=False)
    else:
        done = _finished_lora(tmp_path, tiny_sd15_path, rank=4, te=False)
    if case == "loha":
        tensors = {k.replace("lora_down.weight", "hada_w1_a"): v for k, v in load_file(str(done)).items()}
        save_file(tensors, str(done))
    with pytest.raises(lora.LoraFileError) as err:
        _network_state("network_dim = 8\nnetwork_train_unet_only = true\n", "sd15", tiny_sd15_path, done)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_the_entrypoint_continues_from_the_network_channel_and_the_result_loads_in_a1111(tmp_path, tiny_sd15_path):
    done = _finished_lora(tmp_path, tiny_sd15_path, rank=4, alpha=2.0, te=True)
    dataset = make_dataset(tmp_path / "data", [(64, 64)] * 2)
    root = make_job(tmp_path / "job", tiny_sd15_path, dataset,
                    SMALL + "network_dim = 4\nnetwork_alpha = 2\nmax_train_steps = 1\nlearning_rate = 1e-9\n"
                            "unet_lr = 1e-9\ntext_encoder_lr = 1e-9\nsave_precision = \"float\"\n")
    (root / "input" / "data" / "network").mkdir()
    (root / "input" / "data" / "network" / done.name).symlink_to(done)
    assert run_entrypoint(root) == 0, failure(root)
    out = root / "model" / "demo.safetensors"
    before, after = load_file(str(done)), load_file(str(out))
    assert set(before) == set(after)
    for key in before:  # one step at a vanishing learning rate: still the given LoRA
        torch.testing.assert_close(after[key], before[key], rtol=1e-4, atol=1e-6, msg=key)
    assert_a1111_loadable(out, load_components(tiny_sd15_path))
    effective = (root / "output" / "effective-config.toml").read_text()
    assert "network_dim = 4" in effective


def test_a_network_weights_name_that_is_not_there_fails_before_the_model_loads(tmp_path, tiny_sd15_path):
    dataset = make_dataset(tmp_path / "data", [(64, 64)])
    root = make_job(tmp_path / "job", tiny_sd15_path, dataset, SMALL + 'network_weights = "old_v1.safetensors"\n')
    assert run_entrypoint(root) == 1
    assert "old_v1.safetensors" in failure(root) and "network channel" in failure(root)
    assert json.loads((root / "input" / "config" / "hyperparameters.json").read_text())["output_name"] == "demo"
