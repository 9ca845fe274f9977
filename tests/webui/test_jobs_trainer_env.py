"""The local backend's trainer interpreter: a configured one is probed (torch, CUDA); the managed venv pins the
WebUI's torch; the doctor gets a fix when nothing is set up yet."""
from __future__ import annotations

from cloudlora import settings
from cloudlora.jobs import trainer_env


def test_a_configured_trainer_python_is_reported_ready_with_its_torch(monkeypatch, trainer_python):
    monkeypatch.setenv("CLOUDLORA_TRAINER_PYTHON", trainer_python)
    status = trainer_env.status(settings.resolve())
    assert status["ready"] and not status["managed"] and status["interpreter"] == trainer_python
    assert status["torch"].startswith("2.") and status["cuda"] is False
    assert "no CUDA GPU" in status["detail"]


def test_without_a_trainer_python_the_managed_venv_is_created_on_first_use_and_the_doctor_says_so():
    status = trainer_env.status(settings.resolve())
    assert status["managed"] and not status["ready"]
    assert str(trainer_env.venv_dir()) in status["detail"] and "local training job" in status["fix"]


def test_the_managed_venv_reuses_the_webuis_cuda_torch_wheel():
    cmds = trainer_env.pip_commands("/venv/bin/python", "2.1.2+cu121")
    torch_cmd = next(c for c in cmds if "torch==2.1.2+cu121" in c)
    assert torch_cmd[-2:] == ["--extra-index-url", "https://download.pytorch.org/whl/cu121"]
    locks = [c for c in cmds if "-r" in c]
    assert [c[c.index("-r") + 1] for c in locks] == [str(trainer_env.LOCK), str(trainer_env.CUDA_LOCK)]
    assert all("torch==2.1.2+cu121" in c for c in locks), "the lock must not pull another torch"
    assert not any("open-clip-torch" in " ".join(c) or "-e" in c for c in cmds), \
        "nothing that pulls torchvision, and no install of the extension (the bootstrap maps it)"


def test_the_managed_venv_on_a_cpu_torch_gets_the_lock_without_the_cuda_extras():
    cmds = trainer_env.pip_commands("/venv/bin/python", "2.13.0+cpu")
    assert [c[c.index("-r") + 1] for c in cmds if "-r" in c] == [str(trainer_env.LOCK)]
