"""`cloudlora config defaults|check|format` under A1111's pins (the WebUI side imports the config module)."""
from __future__ import annotations

import json

import tomlkit

from cloudlora.cli import main


def test_defaults_print_a_commented_config_that_checks_clean(tmp_path, capsys):
    assert main(["config", "defaults", "--family", "sdxl"]) == 0
    text = capsys.readouterr().out
    assert 'resolution = "1024,1024"' in text and "#" in text
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert main(["config", "check", str(path), "--family", "sdxl", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "errors": [], "warnings": []}


def test_check_exits_1_and_lists_each_problem_with_the_nearest_key(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('learning_rat = 1e-4\nnetwork_dim = "x"\nLoRA_type = "Standard"\n')
    assert main(["config", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "did you mean 'learning_rate'" in out and "network_dim" in out and "warning: LoRA_type" in out
    assert main(["config", "check", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and len(report["errors"]) == 2 and len(report["warnings"]) == 1


def test_format_write_normalises_in_place_keeping_comments_and_refuses_a_broken_file(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('# mine\nresolution = 768 # wide\noptimizer_type = "prodigy"\nlearning_rate = 1\n')
    assert main(["config", "format", str(path), "--write"]) == 0
    text = path.read_text()
    assert "# mine" in text and "# wide" in text
    assert tomlkit.parse(text)["resolution"] == "768,768" and tomlkit.parse(text)["optimizer_type"] == "Prodigy"
    broken = tmp_path / "broken.toml"
    broken.write_text("seed = -1\n")
    assert main(["config", "format", str(broken), "--write"]) == 1
    assert "seed" in capsys.readouterr().err and broken.read_text() == "seed = -1\n"  # nothing lost


def test_a_missing_file_is_a_user_error(capsys):
    assert main(["config", "check", "/nonexistent/config.toml"]) == 1
    assert "does not exist" in capsys.readouterr().err
