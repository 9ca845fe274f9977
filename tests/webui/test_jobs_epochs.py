"""Which epoch to keep: the best epoch by validation loss in the job summary, an X/Y grid of the epoch files x LoRA
weights rendered by the WebUI's own txt2img (the fake host's here), and pulling the chosen epoch as the LoRA."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from cloudlora import host
from cloudlora.errors import UserError
from cloudlora.jobs.results import epoch_grid
from cloudlora.jobs import service
from cloudlora.jobs.spec import JobSpec

FAKE = Path(__file__).parent / "fake_webui"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def in_webui(tmp_path, monkeypatch, job_env):
    """The extension as A1111 runs it: the fake `modules` installed as the host, the WebUI's Lora folder in tmp."""
    from cloudlora import settings, webui

    monkeypatch.syspath_prepend(str(FAKE))
    for name in [m for m in sys.modules if m == "modules" or m.startswith("modules.")]:
        monkeypatch.delitem(sys.modules, name)
    import modules.paths
    import modules.processing
    import modules.shared

    monkeypatch.setattr(modules.paths, "models_path", str(tmp_path / "models"))
    monkeypatch.setattr(modules.shared.cmd_opts, "lora_dir", str(job_env.lora_dir))
    webui.setup()
    yield modules
    for name in [m for m in sys.modules if m == "modules" or m.startswith("modules.")]:
        del sys.modules[name]
    host.install(host.Host())
    settings.set_webui_options_provider(None)


def _completed_job(job_env, fake_trainer, name="epochs_demo", config=None) -> dict:
    fake_trainer(steps=2, delay=0.01)
    job = service.create_job(JobSpec(model=job_env.model, dataset=job_env.dataset, family="sd15",
                                     config=config or service.default_config("sd15"), lora_name=name))
    deadline = time.monotonic() + 60
    while (info := service.get_job(job["id"]))["status"] != "Completed":
        assert info["status"] not in ("Failed", "Stopped") and time.monotonic() < deadline, info
        time.sleep(0.2)
    return info


def _wait_grid(job_id, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (state := epoch_grid.status(job_id))["status"] == "running":
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    return state


def test_the_job_summary_names_the_epoch_with_the_lowest_validation_loss_and_its_file(job_env, fake_trainer,
                                                                                    monkeypatch, capsys):
    monkeypatch.setenv("FAKE_VALIDATION", "0.5,0.3,0.4")
    job = _completed_job(job_env, fake_trainer, "val_demo")
    best = job["best_epoch"]
    assert (best["epoch"], round(best["loss"], 4), best["file"]) == (2, 0.3, "val_demo-000002.safetensors")
    assert [round(e["loss"], 4) for e in best["epochs"]] == [0.5, 0.3, 0.4]
    assert {"loss/validation/current", "loss/current"} <= {p["tag"] for p in job["loss_points"]}  # the tab's curve
    from cloudlora.ui import train_jobs

    status = train_jobs.job_details(job["id"])[0]
    assert "best epoch 2 (validation loss 0.3000): val_demo-000002.safetensors" in status
    from cloudlora.cli import main

    assert main(["job", "show", job["id"]]) == 0
    assert "best epoch 2 (validation loss 0.3000)" in capsys.readouterr().out


def test_compare_epochs_renders_each_epoch_at_each_weight_with_the_webuis_txt2img_and_saves_the_grid(
        in_webui, job_env, fake_trainer):
    from cloudlora_backend.trainer.config.train_config import set_keys

    config = set_keys(service.default_config("sd15"),
                      {"sample_prompts": "a cldemo portrait --n blurry --w 64 --h 96 --s 12 --d 5"})
    job = _completed_job(job_env, fake_trainer, config=config)
    processing = in_webui.processing
    processing.calls.clear()
    epoch_grid.start(job["id"], "0.6, 0.8, 1.0")
    state = _wait_grid(job["id"])
    assert state["status"] == "done", state
    assert [e["label"] for e in state["epochs"]] == ["epoch 1", "final"]
    calls = processing.calls
    assert len(calls) == 2 * 3
    for call in calls:
        assert call["prompt"].startswith("a cldemo portrait <lora:")  # the job's own sample prompt
        assert (call["width"], call["height"], call["seed"]) == (64, 96, 5)
        assert len(call["applied"]) == 1, "the epoch file was in the Lora folder when txt2img ran"
        assert call["in_state"] == "cloudlora_epoch_grid" and not call["saves"]
    assert sorted({w for c in calls for _, w in c["applied"]}) == [0.6, 0.8, 1.0]
    assert len({n for c in calls for n, _ in c["applied"]}) == 2  # one name per epoch file
    grid = Path(state["grid"])
    assert grid == job_env.lora_dir / "epochs_demo.epochs.png" and grid.is_file()  # beside the LoRA
    from PIL import Image

    with Image.open(grid) as im:
        assert im.width > 3 * 8 and im.height > 2 * 12
    assert not (job_env.lora_dir / epoch_grid.TEMP_FOLDER).exists(), "the borrowed epoch files are gone again"
    assert sorted(p.name for p in job_env.lora_dir.glob("*.safetensors")) == ["epochs_demo.safetensors"]


def test_the_grid_is_refused_in_a_webui_without_txt2img_and_when_the_loaded_checkpoint_is_another_family(
        job_env, fake_trainer, in_webui, monkeypatch):
    job = _completed_job(job_env, fake_trainer)
    monkeypatch.setattr(in_webui.shared.sd_model, "is_sdxl", True)
    with pytest.raises(UserError) as err:
        epoch_grid.start(job["id"])
    assert "SDXL checkpoint loaded" in err.value.message and "SD 1.5" in err.value.fix
    with pytest.raises(UserError, match="weights"):
        epoch_grid.parse_weights("0.5, lots")
    host.install(host.Host(name="a1111"))  # a WebUI that offers no txt2img to extensions
    with pytest.raises(UserError) as err:
        epoch_grid.start(job["id"])
    assert "needs its txt2img" in err.value.message and "cloudlora ui" in err.value.fix


def _panel_button_visible() -> bool:
    from cloudlora.ui import train_tab

    tab = train_tab.build()
    button = next(b for b in tab.blocks.values() if getattr(b, "elem_id", None) == "cloudlora_compare_epochs")
    return bool(button.visible) and all(getattr(p, "visible", True) for p in _parents(tab, button))


def _parents(tab, block):
    out, parent = [], getattr(block, "parent", None)
    while parent is not None and parent is not tab:
        out.append(parent)
        parent = getattr(parent, "parent", None)
    return out


def test_the_compare_button_shows_where_something_can_render_the_grid(in_webui):
    assert _panel_button_visible()
    host.install(host.Host())  # the standalone app: the trainer renders
    assert _panel_button_visible()
    host.install(host.Host(name="a1111"))  # a WebUI without txt2img: nothing renders, no button
    assert not _panel_button_visible()


def test_the_chosen_epoch_becomes_the_lora_replacing_only_the_jobs_own_untouched_copy(job_env, fake_trainer):
    job = _completed_job(job_env, fake_trainer, "chosen")
    final = job_env.lora_dir / "chosen.safetensors"
    assert job["pulled"] == [str(final)]  # auto-pulled: the final epoch
    from cloudlora.library.pull import data_digest, read_metadata

    out = service.pull_job(job["id"], file="chosen-000001.safetensors", as_lora=True)
    assert (out["name"], out["renamed"]) == ("chosen", False) and "replacing" in out["message"]
    epoch_file = Path(service.job_outputs(job["id"])[0])
    assert data_digest(final) == data_digest(epoch_file) and read_metadata(final)["ss_output_name"] == "chosen"
    assert "chosen-000001.safetensors" in json.loads((job_env.lora_dir / "chosen.json").read_text())["notes"]
    final.write_bytes(final.read_bytes()[:-4] + b"\0\0\0\0")  # the user changed it: never overwritten
    again = service.pull_job(job["id"], file="chosen.safetensors", as_lora=True)
    assert again["name"] == "chosen-1" and again["renamed"]
    with pytest.raises(UserError, match="file name"):
        service.pull_job(job["id"], as_lora=True)


def test_rest_refuses_the_grid_where_nothing_renders_and_pulls_an_epoch_as_the_lora(job_env, fake_trainer,
                                                                                      api_client, monkeypatch):
    from fastapi import FastAPI

    from cloudlora import api

    job = _completed_job(job_env, fake_trainer, "rest_epochs")
    app = FastAPI()
    api.mount(app, None)
    client = api_client(app)
    monkeypatch.setattr(host, "_current", host.Host(name="a1111"))  # a WebUI that offers no txt2img
    r = client.post(f"/cloudlora/v1/jobs/{job['id']}/epoch-grid", json={"weights": [0.5, 1.0]})
    assert r.status_code == 400 and "needs its txt2img" in r.json()["detail"]["message"]
    assert client.get(f"/cloudlora/v1/jobs/{job['id']}/epoch-grid").json()["status"] == "idle"
    r = client.post(f"/cloudlora/v1/jobs/{job['id']}/pull", json={"file": "rest_epochs-000001", "as_lora": True})
    assert r.status_code == 200 and r.json()["name"] == "rest_epochs"


def test_in_the_standalone_app_the_trainer_renders_the_epochs_at_each_weight_into_a_grid(
        job_env, fake_trainer, trainer_python, tiny_sd15, monkeypatch):
    """A finished local job on the tiny model (its epoch files: real LoRAs for it), Compare epochs in the standalone
    app's panel: the trainer renders 2 epochs x 2 weights, the grid lands beside the LoRA."""
    import subprocess

    from PIL import Image

    from cloudlora.jobs.job_store import get_record, open_job_store
    from cloudlora.jobs.results import outputs
    from cloudlora.ui import epochs_panel
    from cloudlora_backend.trainer.config.train_config import set_keys

    assert not host.current().in_webui
    config = set_keys(service.default_config("sd15"), {"sample_prompts": "a cldemo portrait --w 64 --h 64 --s 2 --d 5"})
    job = _completed_job(job_env, fake_trainer, "grid_demo", config=config)
    rec = get_record(open_job_store(job_env.settings()), job["id"])
    model_dir = outputs.model_dir(rec, job_env.settings())
    code = ("import sys; from tests.trainer.epoch_grid_helpers import write_epoch_loras; "
            "write_epoch_loras(sys.argv[1], sys.argv[2], 'grid_demo')")
    subprocess.run([trainer_python, "-c", code, str(tiny_sd15), str(model_dir)], check=True, cwd=ROOT,
                   capture_output=True)
    monkeypatch.setenv("CLOUDLORA_TRAINER_PYTHON", trainer_python)  # the real trainer renders, not the fake one
    started = epochs_panel.compare(job["id"], "0, 1.5")
    assert "Rendering with the trainer's pipeline" in started, started
    state = _wait_grid(job["id"], timeout=300)
    assert state["status"] == "done" and state["renderer"] == "trainer", state
    assert (state["done"], state["total"]) == (4, 4)
    assert [e["label"] for e in state["epochs"]] == ["epoch 1", "final"]
    grid = Path(state["grid"])
    assert grid == job_env.lora_dir / "grid_demo.epochs.png"
    with Image.open(grid) as im:
        cells = im.convert("L")
        left, top, title = 110, 24, 22  # compose's layout: 64 px cells, two columns (weights), two rows (epochs)
        cell = lambda r, c: list(cells.crop((left + c * 64, title + top + r * 64, left + (c + 1) * 64,
                                             title + top + (r + 1) * 64)).getdata())
        assert cell(0, 0) == cell(1, 0)  # weight 0: the base model, whichever epoch
        assert cell(0, 1) != cell(0, 0) and cell(1, 1) != cell(0, 1)  # the LoRA at 1.5 changes it, per epoch
    panel = epochs_panel.refresh(job["id"], "")
    assert panel[0].startswith("✅") and panel[1]["visible"]
