"""The LoRA's metadata as sd-scripts writes it: epochs, the base model's hashes, one text-encoder learning rate,
the session id, ModelSpec 1.0.1; and the file still loads completely in A1111."""
from __future__ import annotations

import hashlib
from types import SimpleNamespace

from safetensors import safe_open

from cloudlora_backend.trainer.config import train_config as config
from cloudlora_backend.trainer.loop import outputs
from cloudlora_backend.trainer.data.dataset import TrainData
from cloudlora_backend.trainer.network.kohya_metadata import build_metadata
from cloudlora_backend.trainer.model.load import load_components

from .kohya_check import assert_a1111_loadable
from .train_helpers import SMALL, failure, make_dataset, make_job, run_entrypoint
from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test


def sd_scripts_model_hash(filename):
    """sd-scripts library/train_util.py model_hash (A1111's old short hash), transcribed."""
    with open(filename, "rb") as file:
        m = hashlib.sha256()
        file.seek(0x100000)
        m.update(file.read(0x10000))
        return m.hexdigest()[0:8]


def _meta(path):
    with safe_open(str(path), "pt") as f:
        return f.metadata()


def test_a_trained_lora_carries_epochs_model_hashes_session_id_and_modelspec_1_0_1(tmp_path, tiny_sd15_path):
    dataset = make_dataset(tmp_path / "data", [(64, 64)] * 2)  # 10 images per epoch, batch 2: 5 steps
    root = make_job(tmp_path / "job", tiny_sd15_path, dataset,
                    SMALL + "network_dim = 2\ntrain_batch_size = 2\nmax_train_steps = 8\nsave_every_n_epochs = 1\n"
                            'network_args = ["conv_dim=2"]\n')
    assert run_entrypoint(root) == 0, failure(root)
    final, epoch1 = _meta(root / "model" / "demo.safetensors"), _meta(root / "model" / "demo-000001.safetensors")
    assert final["ss_num_epochs"] == "2" and final["ss_max_train_steps"] == "8"
    assert (final["ss_epoch"], epoch1["ss_epoch"], epoch1["ss_steps"]) == ("2", "1", "5")
    assert final["ss_sd_model_hash"] == sd_scripts_model_hash(tiny_sd15_path)
    assert final["ss_new_sd_model_hash"] == hashlib.sha256(tiny_sd15_path.read_bytes()).hexdigest()
    assert final["ss_session_id"] == epoch1["ss_session_id"] and 0 <= int(final["ss_session_id"]) <= 2**32
    assert final["modelspec.sai_model_spec"] == "1.0.1" and final["modelspec.prediction_type"] == "epsilon"
    assert final["ss_network_module"] == "networks.lora" and final["ss_network_args"] == '{"conv_dim": "2"}'
    from tests.trainer.test_model_network_types import sd_scripts_unet_module_count
    c = load_components(tiny_sd15_path)
    assert_a1111_loadable(root / "model" / "demo.safetensors", c,
                          expected={"unet": sd_scripts_unet_module_count(c.unet, conv=True), "te": [72]})


def test_the_known_sha256_of_the_base_model_is_used_instead_of_reading_it_again(tmp_path, tiny_sd15_path):
    dataset = make_dataset(tmp_path / "data", [(64, 64)])
    root = make_job(tmp_path / "job", tiny_sd15_path, dataset, SMALL + "max_train_steps = 1\nnetwork_dim = 2\n",
                    extra_hp={"model_sha256": "ab" * 32})
    assert run_entrypoint(root) == 0, failure(root)
    assert _meta(root / "model" / "demo.safetensors")["ss_new_sd_model_hash"] == "ab" * 32


def test_sdxl_text_encoder_learning_rates_are_written_as_one_number_as_sd_scripts_does():
    cfg = config.parse("network_train_unet_only = false\ntext_encoder_lr = [1e-5, 2e-5]\n", "sdxl")
    components = SimpleNamespace(family="sdxl", text_encoders=[None, None], model_name="base.safetensors")
    data = TrainData(examples=[], repeats=[])
    facts = outputs.training_facts(cfg, components, data, steps=1, epoch=1, started_at=0.0, batches_per_epoch=1,
                                   dataset_name="d")
    meta = build_metadata("sdxl", "x", 32, 16, facts)
    assert meta["ss_text_encoder_lr"] == "1e-05"
    assert float(meta["ss_text_encoder_lr"]) == 1e-05  # what tools do with it
