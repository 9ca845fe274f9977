"""Paths as A1111 derives them: the WebUI folder, --data-dir, --models-dir, extensions and built-in extensions."""
import argparse
import os
import shlex
import sys
from pathlib import Path


def normalized_filepath(filepath):
    return str(Path(filepath).absolute())


sys.argv += shlex.split(os.environ.get("COMMANDLINE_ARGS", ""))

modules_path = os.path.dirname(os.path.realpath(__file__))
script_path = os.path.dirname(modules_path)

_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--data-dir", type=str, default=script_path)
_pre.add_argument("--models-dir", type=str, default=None)
_pre_opts = _pre.parse_known_args()[0]

data_path = _pre_opts.data_dir
models_path = _pre_opts.models_dir or os.path.join(data_path, "models")
extensions_dir = os.path.join(data_path, "extensions")
extensions_builtin_dir = os.path.join(script_path, "extensions-builtin")
