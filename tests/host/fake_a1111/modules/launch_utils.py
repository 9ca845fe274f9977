"""launch.py's helpers as in A1111 1.10.1: run, is_installed, run_pip, and the extension installers.

Each installer runs as `"<python>" install.py` in a shell with the WebUI folder on PYTHONPATH (so `import launch`
works in it); its failure is only printed. run_pip runs `"<python>" -m pip <command> --prefer-binary` in a shell.
"""
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys

from modules import cmd_args
from modules.paths_internal import extensions_dir, script_path

args, _ = cmd_args.parser.parse_known_args()
python = sys.executable
index_url = os.environ.get("INDEX_URL", "")


def run(command, desc=None, errdesc=None, custom_env=None, live=False) -> str:
    if desc is not None:
        print(desc)
    kwargs = {"args": command, "shell": True, "env": os.environ if custom_env is None else custom_env,
              "encoding": "utf8", "errors": "ignore"}
    if not live:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    result = subprocess.run(**kwargs)
    if result.returncode != 0:
        bits = [f"{errdesc or 'Error running command'}.", f"Command: {command}", f"Error code: {result.returncode}"]
        if result.stdout:
            bits.append(f"stdout: {result.stdout}")
        if result.stderr:
            bits.append(f"stderr: {result.stderr}")
        raise RuntimeError("\n".join(bits))
    return result.stdout or ""


def is_installed(package):
    try:
        return importlib.metadata.distribution(package) is not None
    except importlib.metadata.PackageNotFoundError:
        try:
            return importlib.util.find_spec(package) is not None
        except ModuleNotFoundError:
            return False


def run_pip(command, desc=None, live=False):
    if args.skip_install:
        return None
    index_url_line = f" --index-url {index_url}" if index_url else ""
    return run(f'"{python}" -m pip {command} --prefer-binary{index_url_line}', desc=f"Installing {desc}",
               errdesc=f"Couldn't install {desc}", live=live)


def run_extension_installer(extension_dir):
    path_installer = os.path.join(extension_dir, "install.py")
    if not os.path.isfile(path_installer):
        return
    try:
        env = os.environ.copy()
        env["PYTHONPATH"] = f"{script_path}{os.pathsep}{env.get('PYTHONPATH', '')}"
        stdout = run(f'"{python}" "{path_installer}"', errdesc=f"Error running install.py for extension {extension_dir}",
                     custom_env=env).strip()
        if stdout:
            print(stdout)
    except Exception as err:
        print(f"*** {err}", file=sys.stderr)


def list_extensions(settings_file):
    try:
        with open(settings_file, encoding="utf8") as file:
            settings = json.load(file)
    except (FileNotFoundError, ValueError):
        settings = {}
    disabled = set(settings.get("disabled_extensions", []))
    if args.disable_extra_extensions or args.disable_all_extensions or not os.path.isdir(extensions_dir):
        return []
    return [x for x in os.listdir(extensions_dir) if x not in disabled]


def run_extensions_installers(settings_file):
    if not os.path.isdir(extensions_dir):
        return
    for dirname in list_extensions(settings_file):
        path = os.path.join(extensions_dir, dirname)
        if os.path.isdir(path):
            run_extension_installer(path)


def prepare_environment():
    """A1111 installs torch, its requirements and repositories here (all present already), then the extensions'."""
    if not args.skip_install:
        run_extensions_installers(settings_file=args.ui_settings_file)


def start():
    print(f"Launching Web UI with arguments: {' '.join(sys.argv[1:])}", flush=True)
    import webui

    webui.webui()
