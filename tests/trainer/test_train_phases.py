"""Where a run's time and memory go, and what the GPU holds when: the per-phase summary at the end of the log, the
frozen parts that leave the GPU once cached, and a sample decode that is fp16-safe and tiled."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cloudlora_backend.trainer.config import train_config as config
from cloudlora_backend.trainer.model import placement
from cloudlora_backend.trainer.loop import sampling
from cloudlora_backend.trainer.model.load import build_pipeline, load_components
from cloudlora_backend.trainer.loop.phases import PhaseClock

from .train_helpers import SAMPLE_DATASET, SMALL, failure, make_job, run_entrypoint
from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test


def test_the_log_ends_with_the_time_and_peak_memory_of_each_phase_in_words_and_as_json(tmp_path, tiny_sd15_path,
                                                                                       capsys):
    from cloudlora.jobs.results import phases  # the Train tab's reader of the same line

    toml = SMALL + 'network_dim = 4\nsample_every_n_steps = 2\nsample_prompts = "cldemo --s 2 --w 64 --h 64"\n'
    root = make_job(tmp_path / "job", tiny_sd15_path, SAMPLE_DATASET, toml, output_name="ph",
                    extra_hp={"max_train_steps": 2})
    assert run_entrypoint(root) == 0, failure(root)
    out = capsys.readouterr().out.splitlines()
    human = [ln for ln in out if ln.startswith("time: ")]
    assert len(human) == 1 and human[0].startswith("time: load ") and "steps" in human[0], out[-5:]
    assert "peak host memory (RSS): load " in human[0] and "peak GPU" not in human[0]  # no GPU here
    rec = phases.parse("\n".join(out))
    assert rec is not None, out[-5:]
    assert list(rec["seconds"]) == ["load", "cache", "setup", "steps", "samples", "save"]
    assert rec["count"]["steps"] == rec["steps"] == 2 and rec["count"]["samples"] == 1
    assert rec["count"]["save"] == 2  # the LoRA, then the preview and sidecar
    assert 0 < rec["first_step_s"] < rec["total_s"]
    assert sum(rec["seconds"].values()) <= rec["total_s"]
    assert set(rec["peak_rss_gib"]) == set(rec["seconds"]) and all(v > 0.1 for v in rec["peak_rss_gib"].values())
    assert "peak_gpu_gib" not in rec
    table = phases.markdown(rec)
    assert "| steps (2, " in table and "no GPU (trained on the CPU)" in table


def test_phases_add_up_when_repeated_and_never_nest():
    clock = PhaseClock(torch.device("cpu"))
    for _ in range(3):
        with clock.phase("samples"):
            pass
    clock.step_done()
    clock.step_done()
    rec = clock.record()
    assert rec["count"] == {"samples": 3} and rec["steps"] == 2 and rec["first_step_s"] is not None
    with pytest.raises(RuntimeError, match="inside phase 'save'"):
        with clock.phase("save"):
            clock.begin("steps")


class _Part(torch.nn.Module):
    """Records where it is sent."""

    def __init__(self):
        super().__init__()
        self.trips: list[str] = []

    def to(self, device):  # noqa: D401 - nn.Module.to's signature, reduced to what Placement uses
        self.trips.append(torch.device(device).type)
        return self


@pytest.mark.parametrize("toml,family,idle", [
    ("", "sdxl", ["vae", "text_encoders"]),  # SDXL defaults: latents and text outputs cached, encoders frozen
    ("", "sd15", ["vae"]),  # SD 1.5 defaults train the text encoder: it stays
    ("cache_latents = false\n", "sdxl", ["text_encoders"]),
    ("cache_latents = false\ncache_text_encoder_outputs = false\n", "sdxl", []),
])
def test_after_caching_the_parts_the_steps_never_run_leave_the_gpu_until_a_sample_needs_them(toml, family, idle):
    cfg = config.parse(SMALL + toml, family)
    plan = placement.idle_during_steps(cfg, latents_cached=cfg.cache_latents,
                                       text_cached=cfg.cache_text_encoder_outputs and not cfg.train_text_encoder)
    assert plan == idle
    vae, te1, te2 = _Part(), _Part(), _Part()
    parts = SimpleNamespace(vae=vae, text_encoders=[te1, te2])
    place = placement.Placement(parts, torch.device("cuda"), plan)
    place.offload()
    with place.everything_on_device():
        moved = {"vae": list(vae.trips), "text_encoders": list(te1.trips)}
    expect_parked = {p: ["cpu", "cuda"] for p in idle}
    assert {k: v for k, v in moved.items() if v} == expect_parked
    assert {k: v[-1] for k, v in (("vae", vae.trips), ("text_encoders", te2.trips)) if v} == {p: "cpu" for p in idle}
    # On a CPU-only machine the device is the host: nothing moves.
    cpu = placement.Placement(SimpleNamespace(vae=_Part(), text_encoders=[]), torch.device("cpu"), ["vae"])
    cpu.offload()
    assert cpu.components.vae.trips == []


def test_samples_decode_in_the_vaes_fp32_without_autocast_and_in_tiles_above_the_tile_size(tiny_sd15_path):
    pipe = build_pipeline(load_components(tiny_sd15_path))
    vae = pipe.vae
    latents = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(0))  # a 256 px image
    whole = sampling.decode(pipe, latents, tile_px=512)
    calls = []
    original = vae.tiled_decode
    vae.tiled_decode = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        tiles = sampling.decode(pipe, latents, tile_px=128)
        assert calls, "a 256 px image with 128 px tiles was not decoded in tiles"
        with torch.autocast("cpu", dtype=torch.float16):  # an fp16 GPU's autocast: the decode must not use it
            under_fp16 = sampling.decode(pipe, latents, tile_px=512)
    finally:
        vae.tiled_decode = original
    assert whole.size == tiles.size == (256, 256)
    assert under_fp16.tobytes() == whole.tobytes()
    a, b = (torch.from_numpy(np.asarray(im, dtype=np.float32)).flatten() for im in (whole, tiles))
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.95, "the tiles do not join up into the same picture"
    assert (vae.use_tiling, vae.tile_sample_min_size) == (False, 512)  # the VAE's own settings are back
