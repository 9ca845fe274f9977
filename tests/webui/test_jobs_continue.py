"""Continue training: a new job that starts from a finished job's LoRA or a Kohya LoRA from the Lora folder, sent to
the trainer as its network channel; LoRAs that cannot be continued are refused before anything starts."""
from __future__ import annotations

import json
import time

import pytest

from cloudlora.errors import UserError
from cloudlora.jobs import continue_from, service
from cloudlora.jobs.spec import JobSpec
from tests.webui.test_assets_family import write_safetensors


def _wait(job_id) -> dict:
    deadline = time.monotonic() + 60
    while (info := service.get_job(job_id))["status"] not in ("Completed", "Failed", "Stopped"):
        assert time.monotonic() < deadline, info
        time.sleep(0.2)
    return info


def _spec(job_env, name, **kw) -> JobSpec:
    return JobSpec(model=job_env.model, dataset=job_env.dataset, family="sd15",
                   config=service.default_config("sd15"), lora_name=name, **kw)


def test_continue_training_a_finished_job_sends_its_lora_as_the_network_channel(job_env, fake_trainer):
    fake_trainer(steps=2, delay=0.01)
    first = _wait(service.create_job(_spec(job_env, "first"))["id"])
    assert first["status"] == "Completed"
    second = service.create_job(_spec(job_env, "first-continued", continue_from=f"job:{first['id']}"))
    done = _wait(second["id"])
    assert done["status"] == "Completed", done
    jobdir = job_env.store_dir / "jobs" / second["id"]
    channel = jobdir / "input" / "data" / "network" / "first.safetensors"
    assert channel.resolve() == (job_env.store_dir / "jobs" / first["id"] / "model" / "first.safetensors").resolve()
    hp = json.loads((jobdir / "input" / "config" / "hyperparameters.json").read_text())
    assert hp["network_weights"] == "first.safetensors"
    assert len(hp["model_sha256"]) == 64  # from the model's manifest: the trainer does not hash it again
    assert "continuing from first.safetensors" in "\n".join(done["log_tail"])


def test_a_lora_from_the_lora_folder_of_the_right_family_is_offered_and_others_are_refused(job_env, tmp_path):
    lora = job_env.lora_dir
    (lora / "xl").mkdir(parents=True, exist_ok=True)
    write_safetensors(lora / "style_sd15.safetensors", {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight":
                                                        (4, 8), "lora_unet_down_blocks_0_attentions_0_proj_in"
                                                        ".lora_up.weight": (8, 4)}, {"ss_base_model_version": "sd_v1"})
    write_safetensors(lora / "xl" / "style_xl.safetensors", {"lora_te1_text_model_encoder_layers_0_mlp_fc1"
                                                             ".lora_down.weight": (4, 8),
                                                             "lora_te1_text_model_encoder_layers_0_mlp_fc1"
                                                             ".lora_up.weight": (8, 4)})
    write_safetensors(lora / "loha.safetensors", {"lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a": (8, 4)})
    settings = job_env.settings()
    assert continue_from.lora_choices(settings, "sd15") == ["style_sd15.safetensors"]
    assert continue_from.lora_choices(settings, "sdxl") == ["xl/style_xl.safetensors"]
    path = continue_from.resolve("style_sd15.safetensors", settings)
    continue_from.check(path, "sd15")
    with pytest.raises(UserError) as err:
        continue_from.check(continue_from.resolve("xl/style_xl.safetensors", settings), "sd15")
    assert "SDXL LoRA" in err.value.message and "SDXL model" in err.value.fix
    with pytest.raises(UserError, match="LoHa"):
        continue_from.check(lora / "loha.safetensors", "sd15")
    with pytest.raises(UserError, match="was not found"):
        continue_from.resolve("nothere.safetensors", settings)
    with pytest.raises(UserError, match="SDXL LoRA"):
        service.create_job(_spec(job_env, "wrong", continue_from="xl/style_xl.safetensors"))
    assert service.list_jobs() == []  # nothing was started


def test_the_form_offers_continue_training_and_sends_the_choice(job_env, fake_trainer, monkeypatch):
    from cloudlora.ui import continue_panel, train_form

    fake_trainer(steps=2, delay=0.01)
    first = _wait(service.create_job(_spec(job_env, "formjob"))["id"])
    update = continue_panel.continue_job(first["id"])
    assert update[0]["value"] == f"job:{first['id']}" and update[1]["value"] == job_env.model
    assert update[3]["value"] == "SD 1.5" and update[4]["value"] == "formjob-continued"
    sent = {}
    monkeypatch.setattr(service, "create_job", lambda spec, settings, **_: sent.setdefault("spec", spec) and
                        {"id": "x", "status": "Queued"})
    train_form.create_job("Local (this machine)", "SD 1.5", job_env.model, job_env.dataset, "formjob-continued",
                         service.default_config("sd15"), False, 48, 24, "Cloud LoRA trainer image", "", "tok",
                         f"job:{first['id']}")
    assert sent["spec"].continue_from == f"job:{first['id']}"
    assert continue_panel.value_of(continue_panel.NEW) == ""


def test_a_resumed_continued_job_keeps_starting_from_the_same_lora(job_env, fake_trainer):
    fake_trainer(steps=2, delay=0.01)
    first = _wait(service.create_job(_spec(job_env, "base"))["id"])
    fake_trainer(steps=40, delay=0.1)
    job = service.create_job(_spec(job_env, "base-continued", continue_from=f"job:{first['id']}"))
    deadline = time.monotonic() + 60
    while service.get_job(job["id"])["step"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    service.stop_job(job["id"])
    assert _wait(job["id"])["status"] == "Stopped"
    fake_trainer(steps=40, delay=0.01)
    service.resume_job(job["id"])
    done = _wait(job["id"])
    assert done["status"] == "Completed", done
    hp = json.loads((job_env.store_dir / "jobs" / job["id"] / "input" / "config" / "hyperparameters.json").read_text())
    assert hp["network_weights"] == "base.safetensors"  # the resumed run builds the same network
    assert "continuing from base.safetensors (network_weights=base.safetensors)" in "\n".join(done["log_tail"])
