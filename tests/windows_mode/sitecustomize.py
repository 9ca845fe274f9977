"""The suite's Windows run on Linux: with CLOUDLORA_PLATFORM=windows, the extension cannot import Unix-only modules.

Python imports `sitecustomize` at start-up from the first folder on sys.path that has one, so every interpreter
started with this folder on PYTHONPATH (pytest, and the runner, trainer and TensorBoard it starts, which inherit the
environment) refuses `fcntl`, `resource`, `termios`, `pwd` and `grp` to the project's code (the `cloudlora` and
`cloudlora_backend` packages, and any file under extension/, cloud_backend/, scripts/ or install.py): importing one
raises ModuleNotFoundError, as it would on Windows, even when something else imported it first. The same variable
makes `cloudlora.system.WINDOWS` true, so the project's code takes its Windows branches wherever it branches.

Third-party libraries keep these modules. They test sys.platform themselves, which still says Linux here, so they
take their POSIX branch (huggingface_hub imports termios, psutil 7 imports resource, filelock locks with fcntl); on
Windows they take their own Windows branch instead. Refusing them the modules would fail them for a reason Windows
does not have. (Setting sys.modules[name] = None, the first version of this, did exactly that: the trainer could
not import diffusers, and filelock fell back to SoftFileLock.) The test files themselves are not refused either.

A tripwire for the other Windows trap: `os.kill(pid, 0)` called by the project's code raises RuntimeError (on
Windows signal 0 is CTRL_C_EVENT: it would send Ctrl+C to the WebUI's console, see WINDOWS.md row 1). psutil's own
POSIX pid_exists uses it here, and is left alone.

Only `import X` / `from X import ...` statements are refused (builtins.__import__); importlib.import_module("fcntl")
is not, and the static check (static_check.py) is the other half. Without CLOUDLORA_PLATFORM=windows this file does
nothing. It shadows any other sitecustomize on the path (the test venvs have none). tools/test_windows_mode.sh sets
both variables.
"""
import builtins
import os
import sys

UNIX_ONLY = frozenset({"fcntl", "resource", "termios", "pwd", "grp"})
OUR_PACKAGES = ("cloudlora", "cloudlora_backend")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUR_FILES = tuple(os.path.join(ROOT, d) + os.sep for d in ("extension", "cloud_backend", "scripts"))


def importer_is_ours(module_globals) -> bool:
    """Whether the module doing the import is the project's own code."""
    if not module_globals:
        return False
    spec = module_globals.get("__spec__")
    for name in (module_globals.get("__name__") or "", getattr(spec, "name", None) or ""):
        if any(name == p or name.startswith(p + ".") for p in OUR_PACKAGES):
            return True
    path = os.path.abspath(module_globals.get("__file__") or os.sep)
    return path.startswith(OUR_FILES) or path == os.path.join(ROOT, "install.py")


def _refusing_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and name.partition(".")[0] in UNIX_ONLY and importer_is_ours(globals):
        raise ModuleNotFoundError(f"No module named '{name}' (tests/windows_mode: absent on Windows)", name=name)
    return _real_import(name, globals, locals, fromlist, level)


def _kill_without_probe(pid, sig):
    if sig == 0 and importer_is_ours(sys._getframe(1).f_globals):
        raise RuntimeError(f"os.kill({pid}, 0) from the extension: on Windows signal 0 is CTRL_C_EVENT, which sends "
                           "Ctrl+C to the console (tests/windows_mode); check liveness with psutil")
    return _real_kill(pid, sig)


if os.environ.get("CLOUDLORA_PLATFORM", "").strip().lower() == "windows":
    _real_import = builtins.__import__
    builtins.__import__ = _refusing_import
    _real_kill = os.kill
    os.kill = _kill_without_probe
