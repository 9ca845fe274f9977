"""The local backend's trainer interpreter: a configured one is probed (torch, CUDA); the managed venv pins the
WebUI's torch; the doctor gets a fix when nothing is set up yet."""
from __future__ import annotations

from cloudlora import settings
from cloudlora.jobs.local_backend import trainer_env


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


def test_the_doctor_predicts_a_lock_that_cannot_install_on_this_python(tmp_path, monkeypatch):
    lock = tmp_path / "requirements-lock.txt"
    lock.write_text(trainer_env.LOCK.read_text(encoding="utf-8").replace("Markdown==3.10.2", "Markdown==3.11"),
                    encoding="utf-8")
    monkeypatch.setattr(trainer_env, "LOCK", lock)
    status = trainer_env.status(settings.resolve())
    assert status["status"] == "problem", status
    assert "markdown needs Python >=3.11; this interpreter is Python 3.10" in status["detail"]


def test_the_doctor_predicts_cuda_wheels_on_a_machine_without_an_nvidia_gpu_as_a_problem(monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("CLOUDLORA_TORCH_INDEX", f"http://127.0.0.1:{port}/whl")  # the PyTorch index cannot be reached
    status = trainer_env.status(settings.resolve())
    assert status["status"] == "problem", status
    assert "only a CUDA build of torch" in status["detail"] and "no NVIDIA GPU" in status["detail"]


def test_the_doctor_says_which_torch_the_first_job_gets_and_its_download_size():
    status = trainer_env.status(settings.resolve())
    assert "status" not in status, status
    assert "torch 2.7.1 (cpu;" in status["detail"] and " GB to download for torch" in status["detail"]
    assert "older than" in status["detail"] or "has no torch" in status["detail"]
