"""Installs the WebUI-side dependencies of Cloud LoRA Trainer into the WebUI's venv, only when missing or too old.

A1111 / Forge run this file on every start and after "Install from URL". It reads [project].dependencies from
pyproject.toml (boto3, tomlkit, platformdirs), does nothing when they are satisfied, and otherwise installs just the
missing ones with a constraints file that pins the host's packages (gradio, fastapi, pydantic, numpy, Pillow,
protobuf, transformers, torch and everything they depend on) at their installed versions, so pip can never move
them. Never the sagemaker SDK (it needs pydantic 2). Never a shell of its own. `--skip-install` skips it.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TAG = "[Cloud LoRA Trainer]"


def _load_system():
    """extension/system.py, the one place the platform is read, loaded by path (the package is not importable yet)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_cloudlora_install_system", ROOT / "extension" / "system.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WINDOWS = _load_system().WINDOWS
HOST_PINS = ["gradio", "fastapi", "pydantic", "numpy", "Pillow", "protobuf", "transformers", "torch"]
NEVER = {"sagemaker"}  # needs pydantic 2, which breaks A1111's fastapi 0.94


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_dependencies(pyproject: Path) -> list[str]:
    """[project].dependencies of pyproject.toml (Python 3.10 has no tomllib; this reads just that array)."""
    section, collecting, deps = None, False, []
    for raw in pyproject.read_text(encoding="utf-8").splitlines():
        code = raw.split("#", 1)[0].strip()  # requirement strings never contain '#'
        if not collecting:
            header = re.fullmatch(r"\[([^\[\]]+)\]", code)
            if header:
                section = header.group(1).strip()
                continue
            m = re.match(r"dependencies\s*=\s*\[(.*)", code) if section == "project" else None
            if not m:
                continue
            collecting, code = True, m.group(1)
        deps += [a or b for a, b in re.findall(r'"([^"]*)"|\'([^\']*)\'', code)]
        if "]" in re.sub(r'"[^"]*"|\'[^\']*\'', "", code):  # the closing bracket, outside any string
            break
    return deps


# --- requirements and versions: `packaging` when the venv has it, else a small fallback ---

def _version_key(v: str) -> tuple:
    parts = []
    for piece in re.split(r"[.+!-]", v):
        m = re.match(r"(\d+)(.*)", piece)
        if m:
            parts.append((int(m.group(1)), m.group(2)))
        elif piece:
            parts.append((-1, piece))  # pre-release letters sort before numbers
    while parts and parts[-1] == (0, ""):
        parts.pop()
    return tuple(parts)


def _fallback_parse(req: str) -> tuple[str, list[tuple[str, str]]]:
    req = req.split(";", 1)[0].strip()
    m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)", req)
    name, spec = m.group(1), m.group(3)
    specs = [(op, ver.strip()) for op, ver in re.findall(r"(===|==|!=|~=|<=|>=|<|>)\s*([^,\s]+)", spec)]
    return name, specs


def _fallback_ok(version: str, specs: list[tuple[str, str]]) -> bool:
    v = _version_key(version)
    for op, want in specs:
        w = _version_key(want.rstrip(".*"))
        ok = {
            ">=": v >= w, ">": v > w, "<=": v <= w, "<": v < w, "!=": v != w, "==": v == w, "===": v == w,
            "~=": v >= w and v[: max(len(w) - 1, 1)] == w[: max(len(w) - 1, 1)],
        }[op]
        if want.endswith(".*") and op in ("==", "!="):
            ok = (v[: len(w)] == w) == (op == "==")
        if not ok:
            return False
    return True


def parse_requirement(req: str):
    """-> (name, check(version) -> bool, applies: bool) for a PEP 508 string."""
    try:
        from packaging.requirements import Requirement

        r = Requirement(req)
        applies = r.marker.evaluate() if r.marker else True
        return r.name, (lambda v: r.specifier.contains(v, prereleases=True)), applies
    except ImportError:
        name, specs = _fallback_parse(req)
        return name, (lambda v: _fallback_ok(v, specs)), True


def installed_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def needed(requirements: list[str]) -> list[str]:
    """The requirements that are missing or not satisfied by the installed version."""
    out = []
    for req in requirements:
        name, ok, applies = parse_requirement(req)
        if not applies or canonical(name) in NEVER:
            continue
        version = installed_version(name)
        if version is None or not ok(version):
            out.append(req)
    return out


def _requirement_spec(req: str) -> tuple[str, str, bool]:
    """-> (name, specifier text, applies) of a PEP 508 string."""
    try:
        from packaging.requirements import Requirement

        r = Requirement(req)
        return r.name, str(r.specifier), (r.marker.evaluate({"extra": ""}) if r.marker else True)
    except ImportError:
        name, specs = _fallback_parse(req)
        return name, ",".join(op + v for op, v in specs), "extra" not in req.split(";", 1)[-1] if ";" in req else True


def host_constraints(exclude: set[str]) -> list[str]:
    """Constraints that keep the host as it is.

    The host's pins and their direct dependencies stay at exactly their installed versions. Deeper dependencies may
    move only within what the installed packages require of them (e.g. pandas' python-dateutil>=2.8.2), so pip can
    satisfy boto3 without breaking anything installed and `pip check` stays clean. `exclude` (what we install)
    gets ranges only.
    """
    from importlib import metadata

    exact: dict[str, str] = {}
    ranges: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    seen: set[str] = set()
    todo = [(name, 0) for name in HOST_PINS]
    while todo:
        name, depth = todo.pop(0)
        key = canonical(name)
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(key)
        names[key] = dist.metadata["Name"]
        if depth <= 1:
            exact[key] = dist.version
        for req in dist.requires or []:
            try:
                dep, spec, applies = _requirement_spec(req)
            except Exception:
                continue
            if not applies:
                continue  # an extra the host did not ask for, or another platform
            if spec:
                ranges.setdefault(canonical(dep), []).append(spec)
            todo.append((dep, depth + 1))
    lines = []
    for key in sorted(seen | set(ranges)):
        name = names.get(key, key)
        if key in exact and key not in exclude:
            lines.append(f"{name}=={exact[key]}")
        elif key in ranges and key in seen | exclude:
            lines.append(f"{name}{','.join(ranges[key])}")
    return lines


def commandline_args() -> list[str]:
    """COMMANDLINE_ARGS split as the user's shell would: Windows rules there (`--lora-dir "D:\\Loras\\"` is not an
    unclosed quote); never an exception (a malformed line gives its plain words)."""
    text = os.environ.get("COMMANDLINE_ARGS", "")
    try:
        return [a.strip('"') for a in shlex.split(text, posix=False)] if WINDOWS else shlex.split(text)
    except ValueError:
        return text.split()


def fix_command(missing: list[str]) -> str:
    """The pip command for the user to paste into their shell: POSIX quoting, or cmd.exe's on Windows.

    cmd.exe knows no `'...'`, and outside double quotes `<` `>` in a specifier are redirections (a file `=1.34,`
    appears) and a space in the venv's path splits it. subprocess.list2cmdline quotes only spaces, so each argument
    with a space or a cmd.exe metacharacter is put in double quotes (paths and specifiers never hold a `"`)."""
    argv = [sys.executable, "-m", "pip", "install", *missing]
    if not WINDOWS:
        return " ".join(shlex.quote(a) for a in argv)
    return " ".join(f'"{a}"' if re.search(r'[\s&|<>^(),;=%!]', a) else a for a in argv)


def skip_install_requested(launch=None) -> bool:
    args = list(sys.argv) + commandline_args()
    if "--skip-install" in args:
        return True
    return bool(launch is not None and getattr(getattr(launch, "args", None), "skip_install", False))


def _import_launch():
    try:
        import launch  # the WebUI's own module, importable when the WebUI runs this file

        return launch if hasattr(launch, "run_pip") else None
    except Exception:
        return None


def install(missing: list[str], launch=None) -> None:
    with tempfile.TemporaryDirectory(prefix="cloudlora-install-") as tmp:
        reqs = Path(tmp, "requirements.txt")
        cons = Path(tmp, "constraints.txt")
        reqs.write_text("\n".join(missing) + "\n", encoding="utf-8")
        exclude = {canonical(parse_requirement(r)[0]) for r in missing}
        cons.write_text("\n".join(host_constraints(exclude)) + "\n", encoding="utf-8")
        if launch is not None and '"' not in tmp:
            # launch.run_pip takes one command string (the WebUI runs it through its shell); only our two file
            # paths go into it, quoted, so no requirement specifier (`<`, `>`) ever meets a shell.
            launch.run_pip(f'install -r "{reqs}" -c "{cons}"', f"Cloud LoRA Trainer requirements: {', '.join(missing)}")
        else:
            subprocess.run([sys.executable, "-m", "pip", "install", "--prefer-binary", "-r", str(reqs), "-c", str(cons)],
                           check=True)


def main() -> int:
    launch = _import_launch()
    if skip_install_requested(launch):
        print(f"{TAG} --skip-install: not checking dependencies")
        return 0
    missing = needed(read_dependencies(ROOT / "pyproject.toml"))
    if not missing:
        return 0  # the usual case: every start after the first does nothing
    print(f"{TAG} installing: {', '.join(missing)}")
    try:
        install(missing, launch)
    except Exception as err:  # the WebUI only prints installer failures; say what to do
        print(f"{TAG} could not install {', '.join(missing)}: {err}\n"
              f"{TAG} fix: run `{fix_command(missing)}` "
              "and restart the WebUI", file=sys.stderr)
        return 1
    still = needed(read_dependencies(ROOT / "pyproject.toml"))
    if still:
        print(f"{TAG} still missing after install: {', '.join(still)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
