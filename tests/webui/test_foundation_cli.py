"""The `cloudlora` command itself: --version, usage errors exit 2, and --help on every registered command."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from cloudlora import __version__
from cloudlora.cli import build_parser, main


def _cloudlora(*args):
    exe = Path(sys.executable).parent / "cloudlora"
    assert exe.exists(), f"the console script is missing: {exe} (pip install -e . creates it)"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)


def test_the_console_script_says_its_version():
    out = _cloudlora("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"cloudlora {__version__}"


def test_no_command_prints_the_help_and_exits_2():
    out = _cloudlora()
    assert out.returncode == 2
    assert "usage: cloudlora" in out.stdout and "doctor" in out.stdout


def test_an_unknown_command_is_a_usage_error_exit_2():
    out = _cloudlora("frobnicate")
    assert out.returncode == 2
    assert "invalid choice: 'frobnicate'" in out.stderr


def _commands(parser: argparse.ArgumentParser, prefix=()):
    """Every command path, nested ones too (e.g. ("model", "upload"))."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _commands(sub, prefix + (name,))


COMMANDS = sorted(set(_commands(build_parser())))


def test_the_commands_of_the_design_that_have_landed_are_registered():
    top = {c[0] for c in COMMANDS}
    assert {"doctor", "ui"} <= top


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cloudlora " + " ".join(command))
    assert len(out.splitlines()) >= 2


def test_ui_refuses_a_malformed_api_auth_with_exit_1(capsys):
    assert main(["ui", "--api-auth", "no-colon-here"]) == 1
    err = capsys.readouterr().err
    assert "user:password" in err and "fix:" in err
