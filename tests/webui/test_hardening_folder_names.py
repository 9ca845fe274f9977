"""Only ASCII digits are a repeat count: a folder named with another script's digits ('²_x', '٣_x') is refused by
name with the rename, never a crash (REST answered 500) nor a silent repeat count (issue 20, "Folder names")."""
from __future__ import annotations

import pytest
from fastapi import FastAPI

from cloudlora import api
from cloudlora.assets.dataset_check import check_dataset, suggest_subset_name
from tests.webui.test_assets_datasets import png


@pytest.mark.parametrize("name, rename", [("²_x", "2_x"), ("٣_x", "3_x"), ("１０_cat", "10_cat")])
def test_a_unicode_digit_folder_is_refused_by_name_with_the_rename(tmp_path, name, rename):
    png(tmp_path / "ds" / name / "1.png")
    report = check_dataset(tmp_path / "ds")
    assert not report.ok
    (finding,) = report.errors
    assert finding.code == "repeats-not-ascii" and finding.path == name
    assert "0-9" in finding.message and f"Rename it to {rename}" in finding.fix
    assert suggest_subset_name(name) == rename


def test_the_trainer_reads_no_repeat_count_from_them():
    from cloudlora_backend.trainer.data import layout

    with pytest.raises(layout.LayoutError):
        layout.parse_subset_name("٣_x")  # \d read it as 3 repeats
    assert layout.parse_subset_name("3_x") == (3, "x")


def test_rest_check_and_upload_answer_with_the_named_error(api_client, tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    png(tmp_path / "ds" / "²_x" / "1.png")
    app = FastAPI()
    api.mount(app, None)
    client = api_client(app)
    r = client.post(f"{api.PREFIX}/datasets/check", json={"path": str(tmp_path / "ds")})
    assert r.status_code == 200 and r.json()["errors"][0]["code"] == "repeats-not-ascii", r.text
    r = client.post(f"{api.PREFIX}/datasets/upload", json={"path": str(tmp_path / "ds")})
    assert r.status_code == 400 and "Rename it to 2_x" in r.text, r.text
    r = client.post(f"{api.PREFIX}/datasets/wrap", json={"path": str(tmp_path / "ds" / "²_x")})
    assert r.status_code == 200 and r.json()["root"], r.text
