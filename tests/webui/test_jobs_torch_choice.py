"""Which torch the trainer venv gets, case by case, by the install commands it builds: a CUDA 12.1 host below the
floor, a CUDA host within the range, ROCm, no GPU, macOS, an old driver, an unreachable PyTorch index (said, then
pip's own sources), and a resolution that would bring CUDA packages to a machine without an NVIDIA GPU (refused)."""
from __future__ import annotations

import socket

from cloudlora.jobs.local_backend import torch_choice as tc, trainer_env

RANGE = tc.TorchRange("2.7.1", "2.13.0")
PY = "/venv/bin/python"


def commands(machine: tc.Machine, index: str = "") -> list[list[str]]:
    return trainer_env.pip_commands(PY, tc.choose(machine, RANGE, index))


def torch_step(cmds):
    return next(c for c in cmds if any(a.startswith("torch") for a in c) and "-r" not in c)


def test_a1111s_cuda_121_torch_is_below_the_floor_so_the_venv_gets_a_cuda_12_build_the_driver_runs():
    cmds = commands(tc.Machine("linux", "2.1.2+cu121", driver_cuda="12.2"))
    step = torch_step(cmds)
    assert "torch>=2.7.1,<=2.13.0" in step
    assert step[step.index("--index-url") + 1] == "https://download.pytorch.org/whl/cu126/"
    assert [c[c.index("-r") + 1] for c in cmds if "-r" in c] == [str(trainer_env.LOCK), str(trainer_env.CUDA_LOCK)]


def test_a_newer_driver_gets_the_newer_cuda_build():
    choice = tc.choose(tc.Machine("windows", "2.3.1+cu121", driver_cuda="12.9"), RANGE)
    assert choice.kind == "cuda" and choice.index.endswith("/cu128") and not choice.reuse


def test_a_cuda_host_within_the_range_is_reused_from_its_own_index():
    choice = tc.choose(tc.Machine("linux", "2.8.0+cu128", driver_cuda="12.8"), RANGE)
    assert choice.reuse and choice.requirement == "torch==2.8.0+cu128" and choice.index.endswith("/cu128")
    cmds = trainer_env.pip_commands(PY, choice, "2.8.0+cu128")
    assert all("torch==2.8.0+cu128" in c for c in cmds if "-r" in c), "the lock must not move the reused torch"


def test_rocm_gets_the_rocm_build_without_cuda_extras():
    choice = tc.choose(tc.Machine("linux", "2.1.2+rocm5.6", rocm="5.6"), RANGE)
    assert choice.kind == "rocm" and choice.index.endswith("/rocm6.3")
    assert [c[c.index("-r") + 1] for c in trainer_env.pip_commands(PY, choice) if "-r" in c] == [str(trainer_env.LOCK)]


def test_without_an_nvidia_gpu_the_venv_gets_the_cpu_build():
    for host in ("2.1.2+cu121", "2.1.2", ""):
        choice = tc.choose(tc.Machine("linux", host), RANGE)
        assert choice.kind == "cpu" and choice.index == "https://download.pytorch.org/whl/cpu", host
        assert "no NVIDIA GPU" in choice.why


def test_macos_gets_the_default_wheel_from_pypi():
    choice = tc.choose(tc.Machine("macos", "2.1.2", machine="arm64"), RANGE)
    assert choice.kind == "mps" and choice.index == "" and choice.pip_args() == ["torch>=2.7.1,<=2.13.0"]


def test_a_driver_too_old_for_any_cuda_build_trains_on_the_cpu_and_says_how_to_fix_it():
    choice = tc.choose(tc.Machine("linux", "2.1.2+cu118", driver_cuda="11.4"), RANGE)
    assert choice.kind == "cpu" and any("Update the NVIDIA driver" in n for n in choice.notes)


def test_a_folder_of_wheels_as_the_index_installs_from_it_alone(tmp_path):
    step = torch_step(commands(tc.Machine("linux", "2.1.2+cu121"), str(tmp_path)))
    assert step[step.index("--find-links") + 1] == str(tmp_path) and "--no-index" in step


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_pytorch_index_is_said_then_pips_own_sources_are_used():
    index = f"http://127.0.0.1:{_closed_port()}/whl"
    machine = tc.Machine("linux", "2.1.2+cu121", driver_cuda="12.1")
    choice = tc.choose(machine, RANGE, index)
    assert not tc.reachable(choice.index)
    fell = tc.fallback(choice, machine)
    assert fell.index == "" and "cannot be reached" in fell.why and "CUDA 12 build" in fell.why
    assert torch_step(trainer_env.pip_commands(PY, fell))[-1] == "torch>=2.7.1,<=2.13.0"


def test_cuda_packages_for_a_machine_without_an_nvidia_gpu_are_refused_in_words():
    choice = tc.fallback(tc.choose(tc.Machine("linux", "2.1.2"), RANGE), tc.Machine("linux", "2.1.2"))
    cuda = tc.Resolution([("torch", "2.7.1", 821_000_000), ("nvidia-cudnn-cu12", "9.5.1.17", 571_000_000)])
    message = tc.refusal(choice, cuda)
    assert "no NVIDIA GPU" in message and "1.4 GB" in message and "CLOUDLORA_TORCH_INDEX" in message
    assert tc.refusal(choice, tc.Resolution([("torch", "2.13.0+cpu", 190_000_000)])) == ""
    gpu = tc.choose(tc.Machine("linux", "2.1.2", driver_cuda="12.4"), RANGE)
    assert tc.refusal(gpu, cuda) == "", "a CUDA machine takes CUDA packages"


def test_the_range_admits_patch_releases_of_its_newest_minor_and_nothing_below_the_floor():
    assert RANGE.admits("2.13.1+cpu") and RANGE.admits("2.7.1+cu126") and RANGE.admits("2.10.0")
    assert not RANGE.admits("2.7.0") and not RANGE.admits("2.1.2+cu121") and not RANGE.admits("2.14.0")
    assert tc.lock_range() == RANGE, "the lock's # torch: line"


def test_an_index_the_user_named_is_taken_as_given(tmp_path):
    choice = tc.choose(tc.Machine("linux", "2.1.2"), RANGE, str(tmp_path))
    cuda = tc.Resolution([("torch", "2.7.1", 821_000_000), ("nvidia-cudnn-cu12", "9.5.1.17", 571_000_000)])
    assert choice.named and tc.refusal(choice, cuda) == ""
    assert not tc.fallback(choice, tc.Machine("linux", "2.1.2")).named
