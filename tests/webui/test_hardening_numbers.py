"""NaN and infinity never reach a paid job: every numeric field refuses them by name, and an estimate refuses what
the config check refuses (issue 20, "Numbers")."""
from __future__ import annotations

import pytest

from cloudlora.errors import UserError
from cloudlora.jobs.results import estimate
from cloudlora.jobs import service

NOT_FINITE = ["nan", "inf", "-inf", "+nan"]


@pytest.mark.parametrize("key", ["learning_rate", "unet_lr", "noise_offset", "max_grad_norm", "max_train_steps"])
@pytest.mark.parametrize("value", NOT_FINITE)
def test_the_config_check_refuses_nan_and_infinity_by_name(key, value):
    from cloudlora_backend.trainer.config import train_config as config

    errors = config.check(f"{key} = {value}\n", "sdxl").errors
    assert errors and any(e.startswith(f"{key} = ") and "finite" in e for e in errors), errors
    with pytest.raises(config.ConfigError):
        config.parse(f"{key} = {value}\n", "sdxl")


def test_text_encoder_lr_lists_refuse_them_too():
    from cloudlora_backend.trainer.config import train_config as config

    assert "finite" in " ".join(config.check("text_encoder_lr = [1e-4, nan]\n", "sdxl").errors)


@pytest.mark.parametrize("value", ["nan", "inf", "NaN", "1e400"])
def test_form_and_cli_values_refuse_them(value):
    """The Train tab's fields and `--set key=value` arrive as strings; REST's `set` too."""
    from cloudlora_backend.trainer.config import train_config as config

    with pytest.raises(config.ConfigError) as err:
        config.coerce("learning_rate", value)
    assert "learning_rate" in str(err.value) and "finite" in str(err.value)


def test_the_shared_number_check_for_fields_outside_the_toml():
    from cloudlora_backend.trainer.config.values import finite_number

    assert finite_number("repeats", "10", integer=True, lo=1) == 10
    for bad in ("nan", float("inf"), "1e400", "x", None):
        with pytest.raises(ValueError) as err:
            finite_number("repeats", bad, integer=True, lo=1)
        assert "repeats" in str(err.value)


@pytest.mark.parametrize("config_text", ["max_train_steps = -5\n", "max_train_steps = 1e30\n",
                                         "learning_rate = nan\n", "unet_lr = inf\n"])
def test_the_estimate_refuses_what_the_config_check_refuses(config_text):
    with pytest.raises(UserError) as err:
        estimate.estimate(config_text, family="sd15", images_per_epoch=10, instance_type="ml.g5.2xlarge",
                          backend="sagemaker")
    assert "config has problems" in err.value.message
    with pytest.raises(UserError):
        service.estimate_job(config=config_text, family="sd15", dataset="", instance_type="ml.g5.2xlarge",
                             backend="sagemaker", spot=False)


def test_the_rest_estimate_answers_400_with_the_named_problem(api_client):
    from fastapi import FastAPI

    from cloudlora import api

    app = FastAPI()
    api.mount(app, None)
    r = api_client(app).post(f"{api.PREFIX}/jobs/estimate", json={"config": "max_train_steps = -5\n",
                                                                   "instance_type": "ml.g5.2xlarge",
                                                                   "backend": "sagemaker"})
    assert r.status_code == 400 and "max_train_steps = -5" in r.json()["detail"]["message"], r.text
    ok = api_client(app).post(f"{api.PREFIX}/jobs/estimate", json={"config": "max_train_steps = 500\n",
                                                                    "instance_type": "ml.g5.2xlarge",
                                                                    "backend": "sagemaker"})
    assert ok.status_code == 200 and ok.json()["steps"] == 500


def test_dropped_images_refuse_a_repeat_count_that_is_not_a_finite_whole_number(tmp_path, monkeypatch):
    from PIL import Image

    from cloudlora.assets import dataset_import

    monkeypatch.setenv("CLOUDLORA_DATA_DIR", str(tmp_path / "data"))
    img = tmp_path / "a.png"
    Image.new("RGB", (64, 64)).save(img)
    for bad in (float("inf"), float("nan"), "inf"):
        with pytest.raises(UserError) as err:
            dataset_import.from_images([img], "sks", bad)
        assert "Repeats" in err.value.message
