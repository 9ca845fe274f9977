""""Add access key": the key lands in AWS's credentials file as a named profile, mode 0600, and nowhere else."""
from __future__ import annotations

import stat

import boto3
import pytest
from botocore.stub import Stubber

from cloudlora import settings
from cloudlora.aws import credentials
from cloudlora.errors import UserError
from cloudlora.ui import aws_panel

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_the_key_becomes_a_private_profile_and_other_profiles_stay_as_they_were(isolated_settings):
    creds = isolated_settings / "aws-credentials"
    creds.write_text("# my keys\n[default]\naws_access_key_id = AKIAOLDOLDOLDOLDOLD1\naws_secret_access_key = old\n\n"
                     "[other]\naws_access_key_id = AKIAOTHEROTHEROTHER1\naws_secret_access_key = o\n")
    info = credentials.add_access_key("cloudlora", KEY_ID, SECRET, "eu-west-1", verify=False)
    assert info == {"profile": "cloudlora", "credentials_file": str(creds), "arn": ""}
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    text = creds.read_text()
    assert text.startswith("# my keys\n[default]\naws_access_key_id = AKIAOLDOLDOLDOLDOLD1")
    assert "[other]\naws_access_key_id = AKIAOTHEROTHEROTHER1" in text
    session = boto3.Session(profile_name="cloudlora")  # AWS's own chain reads it
    assert session.get_credentials().access_key == KEY_ID and session.get_credentials().secret_key == SECRET
    assert session.region_name == "eu-west-1"
    assert credentials.list_profiles() == ["default", "other", "cloudlora"]


def test_saving_a_profile_again_replaces_only_its_keys(isolated_settings):
    credentials.add_access_key("work", KEY_ID, SECRET, verify=False)
    credentials.add_access_key("play", "AKIAPLAYPLAYPLAYPLAY", "p" * 40, verify=False)
    credentials.add_access_key("work", "AKIANEWNEWNEWNEWNEW1", "n" * 40, verify=False)
    text = (isolated_settings / "aws-credentials").read_text()
    assert text.count("[work]") == 1 and KEY_ID not in text and "AKIANEWNEWNEWNEWNEW1" in text
    assert "AKIAPLAYPLAYPLAYPLAY" in text


@pytest.mark.parametrize("profile,key_id,secret,words", [
    ("bad name!", KEY_ID, SECRET, "profile name"),
    ("p", "not-a-key", SECRET, "access key ID"),
    ("p", KEY_ID, "short", "secret access key"),
])
def test_malformed_input_is_refused_and_nothing_is_written(isolated_settings, profile, key_id, secret, words):
    with pytest.raises(UserError, match=words):
        credentials.add_access_key(profile, key_id, secret, verify=False)
    assert not (isolated_settings / "aws-credentials").exists()


def test_a_key_aws_rejects_is_not_saved(isolated_settings, monkeypatch):
    real = boto3.Session.client

    def client(self, service, **kw):
        c = real(self, service, **kw)
        st = Stubber(c)
        st.add_client_error("get_caller_identity", "InvalidClientTokenId", "The security token is invalid.", 403)
        st.activate()
        return c

    monkeypatch.setattr(boto3.Session, "client", client)
    with pytest.raises(UserError, match="rejected the access key"):
        credentials.add_access_key("p", KEY_ID, SECRET)
    assert not (isolated_settings / "aws-credentials").exists()


def test_a_key_aws_accepts_is_checked_then_saved(aws_env):
    info = credentials.add_access_key("checked", KEY_ID, SECRET, "us-east-1")
    assert info["arn"].startswith("arn:aws:")  # moto's answer to sts:GetCallerIdentity


def test_the_panel_clears_both_key_fields_and_keeps_the_secret_out_of_settings(aws_env, isolated_settings):
    key_update, secret_update, message = aws_panel.add_key("cloudlora", KEY_ID, SECRET, "us-west-2", True)
    assert key_update["value"] == "" and secret_update["value"] == ""
    assert "Saved profile `cloudlora`" in message and SECRET not in message
    saved = settings.read_file()
    assert saved["aws_profile"] == "cloudlora" and saved["region"] == "us-west-2"
    assert SECRET not in (isolated_settings / "config" / "settings.json").read_text()
    # a failure clears the fields too, and says why
    key_update, secret_update, message = aws_panel.add_key("cloudlora", "nope", SECRET, "", True)
    assert key_update["value"] == "" and secret_update["value"] == "" and "Not saved" in message
