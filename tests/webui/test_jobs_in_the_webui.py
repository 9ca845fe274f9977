"""Inside the WebUI: the LoRA goes to the WebUI's Lora folder (honouring --lora-dir) and the Lora list is refreshed;
the tab offers "Use in txt2img" (hidden standalone, where there is no txt2img)."""
from __future__ import annotations

import time

from cloudlora import host
from cloudlora.jobs import service
from cloudlora.jobs.spec import JobSpec


def _use_button_visible() -> bool:
    from cloudlora.ui import train_tab

    tab = train_tab.build()
    button = next(b for b in tab.blocks.values() if getattr(b, "elem_id", None) == "cloudlora_use_txt2img")
    return bool(button.visible)


def test_a_pulled_lora_goes_to_the_webuis_lora_folder_and_the_lora_list_is_refreshed(job_env, fake_trainer,
                                                                                     tmp_path, monkeypatch):
    webui_loras = tmp_path / "webui" / "models" / "Lora"
    refreshed = []
    monkeypatch.setattr(host, "_current", host.Host(name="a1111", lora_dir=lambda: webui_loras,
                                                    refresh_loras=lambda: refreshed.append(time.time())))
    fake_trainer(steps=2, delay=0.05)
    job = service.create_job(JobSpec(model=job_env.model, dataset=job_env.dataset, family="sd15",
                                     config=service.default_config("sd15"), lora_name="in_webui"))
    deadline = time.monotonic() + 60
    while service.get_job(job["id"])["status"] != "Completed" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert service.get_job(job["id"])["pulled"] == [str(webui_loras / "in_webui.safetensors")]
    assert len(refreshed) == 1
    assert not job_env.lora_dir.exists(), "the standalone Lora setting is not used inside the WebUI"
    # Use in txt2img is offered for this Completed job inside the WebUI (the button is built hidden and shown per job).
    from cloudlora.ui import train_jobs

    details = train_jobs.job_details(job["id"])
    use = details[-2]
    assert use.get("visible") is True and "<lora:in_webui:1>" in details[5]


def test_use_in_txt2img_is_not_shown_outside_the_webui():
    assert not host.current().in_webui
    assert not _use_button_visible()


def _pull_counter_wiring() -> list:
    """The js run when the Train tab's hidden pull counter changes (tests/host checks it in a browser)."""
    from cloudlora.ui import train_tab

    config = train_tab.build().get_config_file()
    ids = [c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "cloudlora_pulls"]
    return [d.get("js") for d in config["dependencies"] for t in d["targets"]
            if (t[0] if isinstance(t, (list, tuple)) else t) in ids]


def test_inside_the_webui_each_pull_refreshes_the_lora_cards_and_standalone_nothing_polls_for_them(monkeypatch):
    assert _pull_counter_wiring() == []
    monkeypatch.setattr(host, "_current", host.Host(name="a1111"))
    assert _pull_counter_wiring() == ["cloudloraRefreshLoras"]
