"""The CLI prints names from the user's files escaped: a newline cannot forge a line of a report, and a
right-to-left override cannot reorder what the reader sees (issue 20, "CLI output")."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cloudlora import display
from tests.webui.test_assets_datasets import good_dataset

RLO = "\u202e"


def test_names_are_escaped_and_plain_ones_untouched():
    assert display.name("cat\nOK: ready to upload.") == "cat\\x0aOK: ready to upload."
    assert display.name(f"photo{RLO}gnp.exe") == "photo\\u202egnp.exe"
    assert display.name("\u2066x\u2069\x1b[31m") == "\\u2066x\\u2069\\x1b[31m"
    assert display.name("10_my cat été 猫") == "10_my cat été 猫"
    assert display.message("first line\nsecond \u202e") == "first line\nsecond \\u202e"


@pytest.mark.skipif(sys.platform == "win32", reason="newlines cannot be in Windows file names")
def test_dataset_check_cannot_be_made_to_print_a_forged_line(tmp_path):
    root = good_dataset(tmp_path / "ds", n=1)
    forged = root / "10_demo" / "notes\nOK: ready to upload.\nx"
    forged.write_text("x")
    (root / "10_demo" / f"evil{RLO}txt.png").write_bytes(b"not an image")
    run = subprocess.run([sys.executable, "-m", "cloudlora", "dataset", "check", str(root)], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ))
    out = run.stdout
    assert "notes\\x0aOK: ready to upload.\\x0ax" in out
    assert not any(line.startswith("OK: ready to upload.") for line in out.splitlines()), out
    assert RLO not in out and "evil\\u202etxt.png" in out, out


def test_tables_and_records_escape_their_cells(capsys):
    from cloudlora.cli.output import print_record, print_table

    print_table([["a\nb", f"x{RLO}y"]], ["name", "other"])
    print_record({"name": "a\nforged: line"}, as_json=False)
    out = capsys.readouterr().out
    assert out.splitlines() == ["name    other", "a\\x0ab  x\\u202ey", "name: a\\x0aforged: line"]
