"""Failure reasons come from facts: out-of-memory only for an out-of-memory error (by its type name on every torch the
trainer runs under, torch 2.1.2 included, or the allocator's own words), anything else is a trainer error with its
real last line; a failed import of the trainer still writes output/failure; the trainer imports without `resource`
(Windows) and reports macOS' peak RSS in KiB."""
from __future__ import annotations

import importlib
import sys
import types

import pytest
import torch

from cloudlora_backend.trainer.loop import train
from cloudlora_backend.trainer.__main__ import EXIT_BUG, EXIT_OOM, OOM_HINT, is_oom, main

from .train_helpers import SAMPLE_DATASET, SMALL, failure, make_job, run_entrypoint
from .train_helpers import one_thread  # noqa: F401 - autouse: one CPU thread per test


@pytest.fixture
def torch_2_1(monkeypatch):
    """torch 2.1.2 as the trainer meets it in A1111 1.10.1: no torch.OutOfMemoryError (only torch.cuda's)."""
    class OutOfMemoryError(RuntimeError):  # torch 2.1's torch.cuda.OutOfMemoryError
        pass

    monkeypatch.delattr(torch, "OutOfMemoryError", raising=False)
    monkeypatch.setattr(torch.cuda, "OutOfMemoryError", OutOfMemoryError)
    return OutOfMemoryError


def test_an_attribute_error_on_torch_2_1_on_a_machine_without_gpu_is_not_out_of_memory(tmp_path, tiny_sd15_path,
                                                                                          torch_2_1, monkeypatch):
    def run(self):  # what diffusers does on an old torch
        raise AttributeError("module 'torch' has no attribute 'accelerator'")

    monkeypatch.setattr(train.Trainer, "run", run)
    root = make_job(tmp_path / "j", tiny_sd15_path, SAMPLE_DATASET, SMALL + "max_train_steps = 1\n")
    assert run_entrypoint(root) == EXIT_BUG
    text = failure(root)
    assert "AttributeError: module 'torch' has no attribute 'accelerator'" in text
    assert OOM_HINT not in text and "out of memory" not in text.lower()


def test_torch_2_1s_cuda_out_of_memory_error_is_out_of_memory(tmp_path, tiny_sd15_path, torch_2_1, monkeypatch):
    def run(self):
        raise torch_2_1("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train.Trainer, "run", run)
    root = make_job(tmp_path / "j", tiny_sd15_path, SAMPLE_DATASET, SMALL + "max_train_steps = 1\n")
    assert run_entrypoint(root) == EXIT_OOM
    assert failure(root).startswith(OOM_HINT) and "Tried to allocate" in failure(root)


def test_out_of_memory_is_judged_by_type_or_the_allocators_words_not_by_other_text(torch_2_1):
    assert is_oom(torch_2_1("anything"))
    assert is_oom(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert not is_oom(AttributeError("module 'torch' has no attribute 'OutOfMemoryError'"))
    assert not is_oom(RuntimeError("DataLoader worker ran out of memory reading a file"))


def test_a_failed_import_of_the_trainer_still_writes_the_failure(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cloudlora_backend.trainer.loop.train", None)  # as when torch cannot import
    assert main(["--root", str(tmp_path)]) == EXIT_BUG
    assert "The trainer failed unexpectedly: ModuleNotFoundError" in failure(tmp_path)


def test_the_trainer_imports_without_resource_and_reads_peak_memory_from_psutil(monkeypatch, tmp_path):
    import cloudlora_backend.trainer.loop as package

    monkeypatch.setitem(sys.modules, "resource", None)  # Windows has no `resource`
    monkeypatch.delitem(sys.modules, "cloudlora_backend.trainer.loop.phases")  # restored after the test, as is:
    monkeypatch.setattr(package, "phases", package.phases)
    phases = importlib.import_module("cloudlora_backend.trainer.loop.phases")
    monkeypatch.setattr(phases, "_STATUS", tmp_path / "no-proc-status")
    assert phases._rss_peak_kib() > 10_000  # this Python holds torch: tens of MiB at least


def test_macos_peak_rss_in_bytes_is_reported_in_kib(monkeypatch, tmp_path):
    from cloudlora_backend.trainer.loop import phases

    usage = types.SimpleNamespace(ru_maxrss=3 * 2**30)  # macOS: bytes
    fake = types.SimpleNamespace(RUSAGE_SELF=0, getrusage=lambda _who: usage)
    monkeypatch.setitem(sys.modules, "resource", fake)
    monkeypatch.setattr(phases, "_STATUS", tmp_path / "no-proc-status")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert phases._rss_peak_kib() == 3 * 2**20
