"""`cloudlora lora inspect FILE` says what the trainer's files are and which hosts load them."""
from __future__ import annotations

import json

import torch

from cloudlora.cli import main
from cloudlora_backend.trainer.network import lora
from cloudlora_backend.trainer.model.load import load_components
from tests.trainer.test_lycoris_load import _flux_file, _sd15_file


def _inspect(path, capsys) -> dict:
    assert main(["lora", "inspect", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_names_family_network_rank_triggers_base_model_steps_and_hosts(tmp_path, tiny_sd15_path,
                                                                               tiny_flux_path, capsys):
    dora = _inspect(_sd15_file(tmp_path / "d.safetensors", tiny_sd15_path, ["conv_dim=2", "dora_wd=True"],
                               "lycoris.kohya", True), capsys)
    assert (dora["family"], dora["network"], dora["rank"], dora["alpha"], dora["conv_rank"]) == \
        ("sd15", "DoRA (LoCon)", 4, 3.0, 2)
    assert dora["text_encoder"] and dora["network_module"] == "lycoris.kohya"
    assert dora["hosts"]["A1111 1.10"] == "loads" and dora["hosts"]["LyCORIS"].startswith("loads through create_")

    flux = _inspect(_flux_file(tmp_path / "f.safetensors", tiny_flux_path), capsys)
    assert (flux["family"], flux["network"], flux["modules"]) == ("flux", "LoRA", 304)
    assert flux["hosts"]["A1111 1.10"].startswith("no") and flux["hosts"]["Forge"] == "loads"

    c = load_components(tiny_sd15_path)
    lora.add_lora(c, rank=2, alpha=1, train_text_encoder=False)
    facts = {"steps": 30, "epoch": 2, "epochs": 3, "trigger_phrase": "sks, red hat", "sd_model_hash": "0123abcd"}
    plain = lora.save_kohya(tmp_path / "p.safetensors", c, 2, 1, facts, torch.float16)
    got = _inspect(plain, capsys)
    assert (got["network"], got["rank"], got["alpha"], got["trigger_words"]) == ("LoRA", 2, 1.0, ["sks", "red hat"])
    assert (got["steps"], got["epoch"], got["epochs"], got["base_model_hash"]) == (30, 2, 3, "0123abcd")
    assert got["base_model"] == tiny_sd15_path.name and not got["text_encoder"]

    assert main(["lora", "inspect", str(plain)]) == 0  # the text view
    text = capsys.readouterr().out
    assert "family:        SD 1.5" in text and "A1111 1.10:" in text


def test_inspect_refuses_a_file_that_is_not_a_lora(tmp_path, capsys):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    assert main(["lora", "inspect", str(bad)]) == 1
    assert "not a LoRA safetensors file" in capsys.readouterr().err
