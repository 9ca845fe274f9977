"""In Chromium against `cloudlora ui` talking to moto's server: "Add access key" saves a profile and clears the key
fields; "Set up AWS" creates the stack, builds the image (moto's CodeBuild) and shows its progress, then the settings
point at the new stack. Screenshots go to artifacts/."""
from __future__ import annotations

import stat

import boto3
import pytest
from playwright.sync_api import expect

from cloudlora import settings

# moto's CloudFormation skips the bucket policy and the CodeBuild project (and says so); the test needs neither.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS::")

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _field(page, elem_id):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def _open_aws_panel(page, base):
    page.goto(base)
    page.locator(".tab-nav button", has_text="Cloud Asset Management").first.click()
    page.locator("#cloudlora_aws").first.get_by_text("AWS setup").first.click()
    page.locator("#cloudlora_aws_setup").first.wait_for()


def _build_project_in_moto() -> None:
    """moto's CloudFormation skips AWS::CodeBuild::Project; its CodeBuild API can still run (fake) builds."""
    boto3.client("codebuild").create_project(
        name="cloudlora-trainer-build", source={"type": "S3", "location": "b/build/bundle.zip"},
        artifacts={"type": "NO_ARTIFACTS"}, serviceRole="arn:aws:iam::123456789012:role/cloudlora-codebuild-us-east-1",
        environment={"type": "LINUX_CONTAINER", "image": "aws/codebuild/standard:7.0",
                     "computeType": "BUILD_GENERAL1_MEDIUM"})


def test_add_an_access_key_then_set_up_aws_and_follow_its_progress(aws_env, isolated_settings, ui_server,
                                                                   browser_page, screenshot):
    _build_project_in_moto()
    base = ui_server()
    page = browser_page
    _open_aws_panel(page, base)
    expect(page.locator("#cloudlora_aws_configured").first).to_contain_text("Not set up yet")

    page.locator("#cloudlora_aws_key_box").first.get_by_text("Add access key").first.click()
    _field(page, "cloudlora_key_profile").fill("trainer")
    _field(page, "cloudlora_key_region").fill("us-east-1")
    _field(page, "cloudlora_key_id").fill(KEY_ID)
    _field(page, "cloudlora_key_secret").fill(SECRET)
    page.locator("#cloudlora_key_save").first.click()
    expect(page.locator("#cloudlora_key_result").first).to_contain_text("Saved profile trainer",
                                                                         timeout=60_000)
    expect(_field(page, "cloudlora_key_id")).to_have_value("")
    expect(_field(page, "cloudlora_key_secret")).to_have_value("")
    creds = isolated_settings / "aws-credentials"
    assert f"aws_secret_access_key = {SECRET}" in creds.read_text()
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert SECRET not in (isolated_settings / "config" / "settings.json").read_text()
    screenshot(page, "aws-key-saved")

    page.locator("#cloudlora_aws_setup").first.click()
    status = page.locator("#cloudlora_aws_status").first
    expect(status).to_contain_text("change: Add Bucket (AWS::S3::Bucket)", timeout=120_000)
    expect(status).to_contain_text("Setup: ✓ done", timeout=120_000)
    expect(status).to_contain_text("build: phase BUILD SUCCEEDED")
    configured = page.locator("#cloudlora_aws_configured").first
    expect(configured).to_contain_text("cloudlora-123456789012-us-east-1")
    screenshot(page, "aws-setup-done")
    saved = settings.read_file()
    assert saved["aws_profile"] == "trainer" and saved["bucket"] == "cloudlora-123456789012-us-east-1"
    assert saved["image_uri"].startswith("123456789012.dkr.ecr.us-east-1.amazonaws.com/cloudlora-trainer:")
