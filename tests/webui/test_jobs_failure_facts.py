"""A failure is called out-of-memory only from facts: the trainer's exit 3 or its failure file (written only when it
judged the exception an OOM), or CUDA's own words. Issue 18: on A1111's torch 2.1.2, a trainer error whose traceback
named torch.OutOfMemoryError was shown as "The GPU ran out of memory" on a machine with no GPU."""
from __future__ import annotations

from cloudlora.jobs.results import failures

# What the runner recorded for a trainer on torch 2.1.2 whose error handler itself failed (no failure file).
TORCH_2_1_TAIL = """\
Traceback (most recent call last):
  File "cloudlora_backend/trainer/__main__.py", line 222, in main
    trainer.setup()
  File "diffusers/utils/torch_utils.py", line 92, in get_device
    if torch.accelerator.is_available():
AttributeError: module 'torch' has no attribute 'accelerator'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "cloudlora_backend/trainer/__main__.py", line 239, in main
    if isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower():
AttributeError: module 'torch' has no attribute 'OutOfMemoryError'"""


def test_a_torch_2_1_attribute_error_naming_out_of_memory_error_is_a_trainer_error_not_oom():
    reason = "The trainer exited with code 1.\n" + TORCH_2_1_TAIL
    exp = failures.explain(reason, "[cloudlora] $ python -m cloudlora_backend.trainer\n" + TORCH_2_1_TAIL,
                           instance_type="local")
    assert exp.cause == "trainer_error", exp
    assert "ran out of memory" not in exp.message
    assert "AttributeError: module 'torch' has no attribute" in exp.message
    assert "cloudlora logs" in exp.fix


def test_out_of_memory_from_the_trainers_exit_code_or_failure_file_or_cudas_words():
    hint = "The GPU ran out of memory. Lower train_batch_size (e.g. 1), ...\n(CUDA error: out of memory)"
    assert failures.explain(hint).cause == "oom"  # the failure file, as the trainer writes it on exit 3
    assert failures.explain("The trainer exited with code 3.\nstep=4/10").cause == "oom"
    assert failures.explain("AlgorithmError: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB").cause == "oom"


def test_other_memory_words_are_not_the_gpu_running_out():
    exp = failures.explain("The trainer exited with code 1.\nTraceback (most recent call last):\n"
                           "RuntimeError: DataLoader worker (pid 12) is killed: out of memory")
    assert exp.cause != "oom"
