"""The doctor's trainer line is proof, not hope: one real LoRA step in the trainer's environment (the SD 1.5 default,
text encoder included), remembered per environment; an environment that imports but cannot train is a problem with
the error's own words."""
from __future__ import annotations

import stat

from cloudlora import doctor, settings
from cloudlora.cli import main as cli_main
from cloudlora.jobs.local_backend import trainer_proof


def _trainer_line(**flags):
    return next(c for c in doctor.run_checks(settings.resolve(flags)) if c.name == "trainer environment")


def test_the_trainer_environment_is_proven_by_one_real_training_step_and_the_answer_is_kept(
        monkeypatch, trainer_python, capsys):
    monkeypatch.setenv("CLOUDLORA_TRAINER_PYTHON", trainer_python)
    line = _trainer_line()
    assert line.status == "ok" and "a training step ran on cpu" in line.detail and "(just now)" in line.detail
    again = trainer_proof.prove(trainer_python)
    assert again["ok"] and again["cached"], "the same environment is not proven twice"
    assert cli_main(["doctor"]) == 0
    assert "cached)" in capsys.readouterr().out


def test_an_environment_that_imports_but_cannot_train_is_a_problem_with_the_errors_words(
        tmp_path, monkeypatch, trainer_python, capsys):
    # The real trainer environment, except that its training step fails as it did with transformers 5.24 + peft 0.21.
    broken = tmp_path / "python"
    broken.write_text(f"""#!/bin/sh
case "$*" in
  *cloudlora_backend.trainer.selftest*)
    echo '{{"ok": false, "error": "ValueError: The version of PEFT you are using is not compatible, please use a version >= 0.22.0"}}';;
  *) exec "{trainer_python}" "$@";;
esac
""")
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CLOUDLORA_TRAINER_PYTHON", str(broken))
    line = _trainer_line()
    assert line.status == "problem"
    assert "cannot train" in line.detail and "The version of PEFT you are using is not compatible" in line.detail
    assert "requirements-lock.txt" in line.fix
    assert cli_main(["doctor"]) == 1, "the local backend cannot train: that is a problem"
    # With SageMaker chosen, the local trainer is information only.
    sagemaker = _trainer_line(backend="sagemaker")
    assert sagemaker.status == "warn" and "not needed: training runs on SageMaker" in sagemaker.detail
