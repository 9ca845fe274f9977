"""The Train tab's continue-from list describes the picked LoRA with `cloudlora lora inspect`'s function."""
from __future__ import annotations

import json
import struct

from cloudlora.ui import continue_panel


def write_lora(path, tensors: dict, metadata: dict) -> None:
    """A minimal safetensors file (F16 zeros), written by hand: the view reads headers only."""
    header, data = {"__metadata__": metadata}, b""
    for name, shape in tensors.items():
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [len(data), len(data) + n]}
        data += b"\x00" * n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def test_the_picked_lora_is_described_and_hosts_that_will_not_load_it_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDLORA_LORA_DIR", str(tmp_path))
    m = "lora_unet_double_blocks_0_img_attn_qkv"
    write_lora(tmp_path / "fx.safetensors", {f"{m}.lora_down.weight": (4, 8), f"{m}.lora_up.weight": (24, 4),
                                             f"{m}.alpha": ()},
               {"ss_base_model_version": "flux1", "ss_network_dim": "4", "ss_network_alpha": "2.0",
                "ss_steps": "30", "modelspec.trigger_phrase": "fxdemo"})
    text = continue_panel.describe("fx.safetensors")
    assert text.startswith("FLUX.1 LoRA") and "rank 4, alpha 2" in text and "30 steps" in text
    assert "triggers: fxdemo" in text and "not loaded by A1111 1.10" in text
    assert continue_panel.describe(continue_panel.NEW) == "" and continue_panel.describe("job:abc") == ""
    assert continue_panel.describe("missing.safetensors").startswith("Cannot read")
