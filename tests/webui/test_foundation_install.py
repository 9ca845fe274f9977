"""install.py in a venv pinned like A1111 1.10.1 (tools/a1111-pins.txt) without our dependencies.

The pinned base venv is cached under .cache/ (keyed by the pins file and the Python version; building it installs
gradio 3.41.2); each test first uninstalls our dependencies from it, so the install really runs. A file lock keeps
two test runs on one machine from sharing it at once.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PINS = ROOT / "tools" / "a1111-pins.txt"
OURS = ["boto3", "botocore", "s3transfer", "jmespath", "tomlkit", "platformdirs"]

# A stand-in for the WebUI's `launch` module (launch_utils.run_pip): records each call in $FAKE_LAUNCH_LOG and runs
# the command the way A1111 does: one string through the shell.
FAKE_LAUNCH = '''
import json, os, shlex, subprocess, sys, types
args = types.SimpleNamespace(skip_install="--skip-install" in sys.argv + shlex.split(os.environ.get("COMMANDLINE_ARGS", "")))
def run_pip(command, desc=None, live=False):
    with open(os.environ["FAKE_LAUNCH_LOG"], "a") as f:
        f.write(json.dumps({"command": command, "desc": desc}) + "\\n")
    if args.skip_install:
        return
    subprocess.run(f'"{sys.executable}" -m pip {command} --prefer-binary', shell=True, check=True)
def is_installed(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None
'''


def _python(venv: Path) -> str:
    return str(venv / "bin" / "python")


def _base_python() -> str:
    return str(Path(sys.base_prefix) / "bin" / "python3")


@pytest.fixture(scope="module")
def pinned_venv():
    """The cached A1111-pinned venv, held under an exclusive lock for this module's tests."""
    key = hashlib.sha256(PINS.read_bytes() + sys.version.encode()).hexdigest()[:12]
    venv = ROOT / ".cache" / f"a1111-pinned-{key}"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"a1111-pinned-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".complete").exists():
            subprocess.run([_base_python(), "-m", "venv", "--clear", str(venv)], check=True)
            pip = [_python(venv), "-m", "pip", "install", "-q"]
            # --upgrade, as tools/env.sh does: the pip that `venv` bundles (23.0 on Python 3.10) backtracks for
            # hours over huggingface_hub's dependencies on these pins; a current pip resolves them in seconds.
            subprocess.run(pip + ["--upgrade", "pip>=23", "setuptools>=64,<70", "wheel"], check=True)
            subprocess.run(pip + ["-r", str(PINS)], check=True)
            (venv / ".complete").write_text("ok")
        yield venv


def _freeze(venv: Path) -> dict[str, str]:
    out = subprocess.run([_python(venv), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                         check=True).stdout
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out)}


def _pins() -> dict[str, str]:
    pins = {}
    for line in PINS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def _uninstall(venv: Path, names: list[str]) -> None:
    subprocess.run([_python(venv), "-m", "pip", "uninstall", "-y", "-q", *names], check=True,
                   capture_output=True)


def _run_install(venv: Path, tmp_path: Path, *, with_launch: bool, extra_args=(), env=None):
    """Runs install.py as the WebUI does: its own process, the WebUI's Python, cwd = the WebUI folder."""
    webui_dir = tmp_path / "webui"
    webui_dir.mkdir(exist_ok=True)
    if with_launch:
        (webui_dir / "launch.py").write_text(FAKE_LAUNCH)
    else:
        (webui_dir / "launch.py").unlink(missing_ok=True)
    log = tmp_path / "run_pip.jsonl"
    log.unlink(missing_ok=True)
    full_env = {**os.environ, "FAKE_LAUNCH_LOG": str(log), "PYTHONPATH": str(webui_dir), **(env or {})}
    out = subprocess.run([_python(venv), str(ROOT / "install.py"), *extra_args], cwd=webui_dir, env=full_env,
                         capture_output=True, text=True, timeout=600)
    calls = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return out, calls


def _dependency_closure(venv: Path, names: list[str]) -> set[str]:
    code = ("import sys, re, importlib.metadata as m\n"
            "todo, seen = list(sys.argv[1:]), set()\n"
            "while todo:\n"
            "    n = re.sub(r'[-_.]+', '-', todo.pop()).lower()\n"
            "    if n in seen: continue\n"
            "    seen.add(n)\n"
            "    try: reqs = m.requires(n) or []\n"
            "    except m.PackageNotFoundError: continue\n"
            "    todo += [re.match(r'[A-Za-z0-9._-]+', r).group(0) for r in reqs if 'extra ==' not in r]\n"
            "print(' '.join(sorted(seen)))\n")
    out = subprocess.run([_python(venv), "-c", code, *names], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def _pip_check(venv: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_python(venv), "-m", "pip", "check"], capture_output=True, text=True)


def test_first_start_installs_only_our_missing_deps_keeps_every_pin_and_a_restart_runs_no_pip(pinned_venv,
                                                                                              tmp_path):
    _uninstall(pinned_venv, OURS)
    before = _freeze(pinned_venv)
    assert "boto3" not in before and "tomlkit" not in before
    for name, version in _pins().items():
        assert before[name] == version, f"the cached venv is not pinned like A1111: {name} {before[name]}"

    out, calls = _run_install(pinned_venv, tmp_path, with_launch=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(calls) == 1, calls  # one pip run, through the WebUI's launch.run_pip
    assert calls[0]["command"].startswith("install -r ")
    assert "<" not in calls[0]["command"] and ">" not in calls[0]["command"]  # nothing a shell would redirect

    after = _freeze(pinned_venv)
    assert set(before) <= set(after), "install.py removed packages"
    for name, version in _pins().items():
        assert after[name] == version, f"install.py moved the WebUI's pin {name}: {version} -> {after[name]}"
    # Anything else that moved is a dependency of what we installed, moved within what the host allows
    # (e.g. python-dateutil 3.0 -> 2.9 for botocore; pandas accepts both), and `pip check` below must be clean.
    changed = {n for n, v in before.items() if after[n] != v}
    assert changed <= _dependency_closure(pinned_venv, ["boto3", "tomlkit", "platformdirs"]), changed
    assert {"boto3", "botocore", "tomlkit", "platformdirs"} <= set(after)
    assert "sagemaker" not in after
    check = _pip_check(pinned_venv)
    assert check.returncode == 0, check.stdout + check.stderr

    # The next WebUI start: everything is satisfied, so no pip at all, and no output.
    out, calls = _run_install(pinned_venv, tmp_path, with_launch=True)
    assert out.returncode == 0, out.stderr
    assert calls == []
    assert out.stdout.strip() == ""
    assert _freeze(pinned_venv) == after


def test_without_the_webui_launch_module_it_installs_with_pip_directly_and_skip_install_is_honoured(pinned_venv,
                                                                                                     tmp_path):
    _uninstall(pinned_venv, ["tomlkit"])
    before = _freeze(pinned_venv)

    # --skip-install (on the command line, or in COMMANDLINE_ARGS as the WebUI passes it): nothing happens.
    out, calls = _run_install(pinned_venv, tmp_path, with_launch=True, env={"COMMANDLINE_ARGS": "--skip-install"})
    assert out.returncode == 0 and calls == []
    assert "skip-install" in out.stdout
    out, calls = _run_install(pinned_venv, tmp_path, with_launch=False, extra_args=["--skip-install"])
    assert out.returncode == 0 and "tomlkit" not in _freeze(pinned_venv)

    out, calls = _run_install(pinned_venv, tmp_path, with_launch=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "installing: tomlkit" in out.stdout  # only the missing one
    after = _freeze(pinned_venv)
    assert "tomlkit" in after
    assert {n: v for n, v in after.items() if n != "tomlkit"} == before
    assert _pip_check(pinned_venv).returncode == 0


def test_the_dependency_list_is_read_from_pyproject_and_versions_compare_without_packaging(tmp_path):
    sys.path.insert(0, str(ROOT))
    try:
        import install
    finally:
        sys.path.remove(str(ROOT))
    deps = install.read_dependencies(ROOT / "pyproject.toml")
    assert any(d.startswith("boto3") for d in deps)
    assert not any(d.startswith(("torch", "gradio", "sagemaker", "pytest")) for d in deps)  # never host pins/extras

    toml = tmp_path / "pyproject.toml"
    toml.write_text('[tool.x]\ndependencies = ["nope"]\n[project]\nname = "x"\ndependencies = [\n'
                    '  "a>=1,<2",  # comment ]\n  \'b[extra]~=1.4\',\n]\n[project.optional-dependencies]\n'
                    'dev = ["c"]\n')
    assert install.read_dependencies(toml) == ["a>=1,<2", "b[extra]~=1.4"]

    name, specs = install._fallback_parse("boto3>=1.34,<2")
    assert name == "boto3"
    assert install._fallback_ok("1.44.5", specs) and not install._fallback_ok("1.9", specs)
    assert not install._fallback_ok("2.0", specs)
    assert install._fallback_ok("1.10.21", [("~=", "1.10")]) and not install._fallback_ok("2.0", [("~=", "1.10")])
    assert install._fallback_ok("3.20.0", [("==", "3.20.*")])
