"""The standalone app's epoch comparison, trainer side: the base model loaded as sampling loads it, each epoch LoRA
merged at each weight, the prompt rendered with a fixed seed; PNGs and a manifest."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.trainer.epoch_grid_helpers import write_epoch_loras


def test_two_epochs_at_two_weights_give_four_images_that_differ_by_weight(tmp_path, tiny_sd15_path):
    loras = write_epoch_loras(tiny_sd15_path, tmp_path / "model", "demo")
    request = {"model": str(tiny_sd15_path), "family": "sd15", "loras": [str(p) for p in loras],
               "weights": [0.0, 1.0], "sampler": "euler_a", "out_dir": str(tmp_path / "grid"),
               "prompts": [{"prompt": "a cldemo portrait", "width": 64, "height": 64, "steps": 2, "cfg_scale": 7,
                            "seed": 5}]}
    (tmp_path / "request.json").write_text(json.dumps(request))
    done = subprocess.run([sys.executable, "-m", "cloudlora_backend.trainer.loop.epoch_grid",
                           str(tmp_path / "request.json")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["cell", "1/4", "cell", "2/4", "cell", "3/4", "cell", "4/4"]
    cells = json.loads((tmp_path / "grid" / "manifest.json").read_text())["cells"]
    assert [(c["lora"], c["weight"]) for c in cells] == [(0, 0.0), (0, 1.0), (1, 0.0), (1, 1.0)]
    px = {(c["lora"], c["weight"]): np.asarray(Image.open(tmp_path / "grid" / c["file"]).convert("RGB"), dtype=int)
          for c in cells}
    assert all(a.shape == (64, 64, 3) for a in px.values())
    # weight 0 is the base model whatever the epoch (the same seed, and the weights were put back in between)
    assert np.array_equal(px[(0, 0.0)], px[(1, 0.0)])
    # a LoRA at weight 1 changes the picture, and each epoch's LoRA changes it differently
    assert np.abs(px[(0, 1.0)] - px[(0, 0.0)]).mean() > 1
    assert np.abs(px[(1, 1.0)] - px[(0, 1.0)]).mean() > 1


def test_a_lora_of_another_family_is_said_with_what_to_do(tmp_path, tiny_sd15_path, tiny_sdxl_path):
    loras = write_epoch_loras(tiny_sd15_path, tmp_path / "model", "demo", epochs=1)
    request = {"model": str(tiny_sdxl_path), "family": "sdxl", "loras": [str(loras[0])], "weights": [1.0],
               "out_dir": str(tmp_path / "grid"), "prompts": [{"prompt": "x", "width": 64, "height": 64, "steps": 1,
                                                               "seed": 1}]}
    (tmp_path / "request.json").write_text(json.dumps(request))
    done = subprocess.run([sys.executable, "-m", "cloudlora_backend.trainer.loop.epoch_grid",
                           str(tmp_path / "request.json")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "error: demo.safetensors has modules this sdxl model does not have" in done.stdout
