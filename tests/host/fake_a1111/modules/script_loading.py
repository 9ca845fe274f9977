"""Loads a Python file by path, as A1111 loads scripts/*.py and preload.py (never through sys.path imports)."""
import importlib.util
import os
import sys

loaded_scripts = {}


def load_module(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    loaded_scripts[path] = module
    return module


def preload_extensions(extensions_dir, parser, extension_list=None):
    if not os.path.isdir(extensions_dir):
        return
    names = extension_list if extension_list is not None else os.listdir(extensions_dir)
    for dirname in sorted(names):
        preload_script = os.path.join(extensions_dir, dirname, "preload.py")
        if not os.path.isfile(preload_script):
            continue
        try:
            module = load_module(preload_script)
            if hasattr(module, "preload"):
                module.preload(parser)
        except Exception as err:
            print(f"*** Error running preload() for {preload_script}: {err!r}", file=sys.stderr)
