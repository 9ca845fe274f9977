"""Settings resolution: command-line flag > environment > WebUI options > settings file > default."""
from __future__ import annotations

import json

import pytest

from cloudlora import settings
from cloudlora.errors import UserError


@pytest.fixture
def webui_options():
    values = {}
    settings.set_webui_options_provider(lambda: values)
    yield values
    settings.set_webui_options_provider(None)


def test_each_layer_wins_over_the_ones_below_it(webui_options, monkeypatch):
    assert (settings.resolve().region, settings.resolve().sources["region"]) == ("", "default")
    settings.save({"region": "eu-west-1"})
    assert (settings.resolve().region, settings.resolve().sources["region"]) == ("eu-west-1", "file")
    webui_options["region"] = "eu-north-1"
    assert (settings.resolve().region, settings.resolve().sources["region"]) == ("eu-north-1", "webui")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    assert (settings.resolve().region, settings.resolve().sources["region"]) == ("us-west-2", "env")
    flagged = settings.resolve({"region": "ap-south-1"})
    assert (flagged.region, flagged.sources["region"]) == ("ap-south-1", "flag")


def test_empty_values_fall_through_to_the_next_layer(webui_options, monkeypatch):
    settings.save({"bucket": "from-file"})
    webui_options["bucket"] = ""
    monkeypatch.setenv("CLOUDLORA_BUCKET", "")
    assert settings.resolve({"bucket": None}).bucket == "from-file"


def test_the_documented_environment_variables_are_read(monkeypatch):
    env = {"CLOUDLORA_BACKEND": "sagemaker", "CLOUDLORA_STORE": "/s", "CLOUDLORA_LORA_DIR": "/l",
           "CLOUDLORA_BUCKET": "b", "CLOUDLORA_ROLE_ARN": "arn:aws:iam::1:role/r", "CLOUDLORA_IMAGE_URI": "i",
           "AWS_PROFILE": "p", "AWS_REGION": "us-east-2", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:1"}
    s = settings.resolve(environ=env)
    assert (s.backend, s.store_dir, s.lora_dir, s.bucket, s.role_arn, s.image_uri, s.aws_profile, s.region,
            s.s3_endpoint_url) == ("sagemaker", "/s", "/l", "b", "arn:aws:iam::1:role/r", "i", "p", "us-east-2",
                                   "http://127.0.0.1:1")
    assert set(s.sources.values()) >= {"env"}


def test_the_backend_defaults_to_local_and_becomes_sagemaker_once_bucket_and_role_are_set():
    assert settings.resolve(environ={}).effective_backend == "local"
    s = settings.resolve(environ={"CLOUDLORA_BUCKET": "b", "CLOUDLORA_ROLE_ARN": "arn:aws:iam::1:role/r"})
    assert s.effective_backend == "sagemaker"
    assert settings.resolve({"backend": "local"}, environ={"CLOUDLORA_BUCKET": "b", "CLOUDLORA_ROLE_ARN": "r"}
                            ).effective_backend == "local"


def test_the_settings_file_never_takes_a_secret():
    with pytest.raises(ValueError, match="unknown settings"):
        settings.save({"aws_secret_access_key": "x"})
    settings.save({"aws_profile": "work"})
    assert json.loads(settings.settings_file().read_text()) == {"aws_profile": "work"}


def test_a_broken_settings_file_is_named_with_its_fix():
    settings.settings_file().parent.mkdir(parents=True, exist_ok=True)
    settings.settings_file().write_text("{not json")
    with pytest.raises(UserError) as err:
        settings.resolve()
    assert str(settings.settings_file()) in err.value.message and err.value.fix
