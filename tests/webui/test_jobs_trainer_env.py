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
    reqs = next(c for c in cmds if "-r" in c)
    assert "torch==2.1.2+cu121" in reqs, "the requirements must not pull another torch"
    assert any("--no-deps" in c and "open-clip-torch>=2.20,<4" in c for c in cmds)
