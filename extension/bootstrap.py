"""The import names `cloudlora` and `cloudlora_backend` for a bare clone: one place for the entry script and every
process the extension starts.

Install from URL leaves a git clone in `extensions/`, not a pip install, and A1111 puts that folder on `sys.path` only
while `scripts/*.py` load. So:
- the entry script loads this file by path and calls `install()`: a finder on `sys.meta_path` maps the two names to
  their folders (`cloudlora` -> this folder, `cloudlora_backend` -> `../cloud_backend`) for the rest of the process;
- every child process is started through `command(python, "-m", module, ...)`, which runs
  `python <this file> -m module ...`: the same finder, then the module as `__main__`. It works with any interpreter
  (the WebUI's, the managed trainer venv's) and whether or not the package is also pip-installed.

Stdlib only, no relative imports: this file also runs as a plain script.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import os
import runpy
import sys

FILE = os.path.abspath(__file__)
HERE = os.path.dirname(FILE)
_MARK = "_cloudlora_bootstrap_finder"


def folders() -> dict[str, str]:
    """{import name: package folder}: this folder is `cloudlora`; `cloudlora_backend` sits beside it (a clone:
    extension/ and cloud_backend/; an installed wheel: cloudlora/ and cloudlora_backend/)."""
    parent = os.path.dirname(HERE)
    backend = os.path.join(parent, "cloud_backend")
    if not os.path.isdir(backend):
        backend = os.path.join(parent, "cloudlora_backend")
    return {"cloudlora": HERE, "cloudlora_backend": backend}


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, mapping: dict[str, str]):
        self.mapping = mapping
        setattr(self, _MARK, True)

    def find_spec(self, name, path=None, target=None):  # noqa: ARG002
        folder = self.mapping.get(name)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(name, os.path.join(folder, "__init__.py"),
                                                      submodule_search_locations=[folder])


def install() -> None:
    """Makes both names importable in this process, from the folders beside this file (idempotent).

    The finder goes first on sys.meta_path, so the code that runs is always the code next to this file, even where
    another copy is pip-installed; a name that is already imported is left alone.
    """
    if any(getattr(f, _MARK, False) for f in sys.meta_path):
        return
    mapping = {name: folder for name, folder in folders().items()
               if name not in sys.modules and os.path.isfile(os.path.join(folder, "__init__.py"))}
    if mapping:
        sys.meta_path.insert(0, _Finder(mapping))


def command(python: str, *args: str) -> list[str]:
    """The argv that runs `python *args` (`-m module ...` or `-c code ...`) with both import names available."""
    return [python, FILE, *args]


def _main(argv: list[str]) -> None:
    # Run as a script, Python put this folder first on sys.path: remove it, or its modules (errors, host, ...) would
    # be importable under bare names.
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == HERE:
        del sys.path[0]
    install()
    if len(argv) >= 2 and argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    elif len(argv) >= 2 and argv[0] == "-c":
        sys.argv = ["-c", *argv[2:]]
        sys.path.insert(0, "")
        exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102
    else:
        raise SystemExit("usage: python bootstrap.py -m MODULE [ARGS...] | -c CODE [ARGS...]")


if __name__ == "__main__":
    _main(sys.argv[1:])
