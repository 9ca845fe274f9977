"""Finds Unix-only calls outside a platform guard in the code that runs on Windows (WINDOWS.md; issue 18 part 4).

Scanned: extension/, cloud_backend/, install.py, scripts/. `python tests/windows_mode/static_check.py [ROOT]` prints
each finding as `path:line: what; fix`; tests/webui/test_windows_static.py fails on any.

What is flagged, and what guards it (a guard is a fact the code checks before it gets there):

| construct                                          | accepted guards                                       |
|----------------------------------------------------|-------------------------------------------------------|
| import of fcntl, resource, termios, pwd, grp        | platform, try/except ImportError                       |
| signal.SIGHUP/SIGKILL/SIGUSR1/SIGUSR2/SIGQUIT/      | platform, hasattr, try/except AttributeError           |
|   SIGCHLD/SIGALRM/SIGPIPE (attribute access)         |   (getattr(signal, "SIGHUP", None) is not flagged)     |
| os.fchmod/getuid/geteuid/getpgid/killpg/setsid/     | platform, hasattr, try/except AttributeError           |
|   fork/sched_getaffinity/sysconf                     |                                                        |
| preexec_fn= / pass_fds= (unless None or empty)       | platform                                               |
| os.kill(pid, 0): on Windows that is Ctrl+C           | platform                                               |
| os.name, sys.platform outside extension/system.py   | none: read system.WINDOWS/MACOS/LINUX (the trainer,    |
|                                                      |   which cannot import it, uses try/hasattr instead)     |

- platform: the code runs only when a test on `WINDOWS`/`MACOS`/`LINUX` (a name or an attribute, e.g.
  `system.WINDOWS`) rules Windows out: the body of `if not system.WINDOWS:` / `if system.LINUX:`, the `else` of
  `if system.WINDOWS:`, the code after `if system.WINDOWS: return ...`, the right side of `not WINDOWS and ...` /
  `WINDOWS or ...`, either branch of a conditional expression likewise.
- hasattr: the same with `hasattr(...)` as the test (`if hasattr(signal, "SIGHUP"):`, `hasattr(os, "getuid") and
  os.getuid() == uid`, `not hasattr(os, "getuid") or ...`, `if not hasattr(...): return`).
- try/except: the construct sits in a `try` body whose handlers catch that error (or Exception, BaseException, bare).
- Anything else that is right for a reason the checker cannot see: end the line with `# unix-only: <why>`.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

UNIX_MODULES = {"fcntl", "resource", "termios", "pwd", "grp"}
UNIX_SIGNALS = {"SIGHUP", "SIGKILL", "SIGUSR1", "SIGUSR2", "SIGQUIT", "SIGCHLD", "SIGALRM", "SIGPIPE"}
UNIX_OS = {"fchmod", "getuid", "geteuid", "getpgid", "killpg", "setsid", "fork", "sched_getaffinity", "sysconf"}
PLATFORM_NAMES = {"WINDOWS", "MACOS", "LINUX"}
MARKER = "# unix-only:"
SCANNED = ("extension", "cloud_backend", "install.py", "scripts")
SYSTEM_MODULE = "extension/system.py"

IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
ATTRIBUTE_ERRORS = {"AttributeError", "Exception", "BaseException"}


@dataclass(frozen=True)
class Finding:
    path: str  # relative to the scanned root, with /
    line: int
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}; {self.fix}"


# --- what a test establishes -----------------------------------------------------------------------------------------


def _platform_word(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name) and node.id in PLATFORM_NAMES:
        return node.id
    if isinstance(node, ast.Attribute) and node.attr in PLATFORM_NAMES:
        return node.attr
    return None


def _is_hasattr(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr"


def when_true(test: ast.AST) -> set[str]:
    """The guards that hold when `test` is true: "platform" (not Windows) and/or "hasattr" (a capability)."""
    word = _platform_word(test)
    if word:
        return {"platform"} if word != "WINDOWS" else set()
    if _is_hasattr(test):
        return {"hasattr"}
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return when_false(test.operand)
    if isinstance(test, ast.BoolOp):
        parts = [when_true(v) for v in test.values]
        return set().union(*parts) if isinstance(test.op, ast.And) else set.intersection(*parts)
    return set()


def when_false(test: ast.AST) -> set[str]:
    """The guards that hold when `test` is false."""
    if _platform_word(test) == "WINDOWS":
        return {"platform"}
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return when_true(test.operand)
    if isinstance(test, ast.BoolOp):
        parts = [when_false(v) for v in test.values]
        return set().union(*parts) if isinstance(test.op, ast.Or) else set.intersection(*parts)
    return set()


def _exits(body: list[ast.stmt]) -> bool:
    return bool(body) and isinstance(body[-1], (ast.Return, ast.Raise, ast.Continue, ast.Break))


def _caught(handlers: list[ast.ExceptHandler]) -> set[str]:
    names: set[str] = set()
    for h in handlers:
        if h.type is None:
            names.add("BaseException")
        for t in (h.type.elts if isinstance(h.type, ast.Tuple) else [h.type] if h.type else []):
            if isinstance(t, ast.Name):
                names.add(t.id)
            elif isinstance(t, ast.Attribute):
                names.add(t.attr)
    return names


# --- the walk --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    guards: frozenset = frozenset()  # "platform", "hasattr"
    caught: frozenset = frozenset()  # exception names an enclosing try catches

    def with_guards(self, more) -> "Context":
        return Context(self.guards | frozenset(more), self.caught)


class _Checker:
    def __init__(self, rel: str, source: str):
        self.rel = rel
        self.lines = source.splitlines()
        self.findings: list[Finding] = []

    # statements: an `if WINDOWS: return` guards what follows it in the same block
    def block(self, body: list[ast.stmt], ctx: Context) -> None:
        for stmt in body:
            self.stmt(stmt, ctx)
            if isinstance(stmt, ast.If):
                if _exits(stmt.body):
                    ctx = ctx.with_guards(when_false(stmt.test))
                if stmt.orelse and _exits(stmt.orelse):
                    ctx = ctx.with_guards(when_true(stmt.test))

    def stmt(self, node: ast.stmt, ctx: Context) -> None:
        if isinstance(node, ast.If):
            self.expr(node.test, ctx)
            self.block(node.body, ctx.with_guards(when_true(node.test)))
            self.block(node.orelse, ctx.with_guards(when_false(node.test)))
        elif isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            self.block(node.body, Context(ctx.guards, ctx.caught | frozenset(_caught(node.handlers))))
            for h in node.handlers:
                self.block(h.body, ctx)
            self.block(node.orelse, ctx)
            self.block(node.finalbody, ctx)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            self.check_import(node, ctx)
        else:
            for field, value in ast.iter_fields(node):
                if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                    self.block(value, ctx)
                elif isinstance(value, list):
                    for v in value:
                        if isinstance(v, ast.AST):
                            self.any(v, ctx)
                elif isinstance(value, ast.AST):
                    self.any(value, ctx)

    def any(self, node: ast.AST, ctx: Context) -> None:
        if isinstance(node, ast.stmt):
            self.stmt(node, ctx)
        elif isinstance(node, ast.excepthandler):
            self.block(node.body, ctx)
        else:
            self.expr(node, ctx)

    def expr(self, node: ast.AST, ctx: Context) -> None:
        if isinstance(node, ast.IfExp):
            self.expr(node.test, ctx)
            self.expr(node.body, ctx.with_guards(when_true(node.test)))
            self.expr(node.orelse, ctx.with_guards(when_false(node.test)))
            return
        if isinstance(node, ast.BoolOp):
            inner = ctx
            for value in node.values:
                self.expr(value, inner)
                inner = inner.with_guards(when_true(value) if isinstance(node.op, ast.And) else when_false(value))
            return
        if isinstance(node, ast.Lambda):
            self.expr(node.body, ctx)
            return
        self.check_expr(node, ctx)
        for child in ast.iter_child_nodes(node):
            self.any(child, ctx)

    # the rules
    def flag(self, node: ast.AST, what: str, fix: str) -> None:
        first, last = node.lineno, getattr(node, "end_lineno", None) or node.lineno
        if any(MARKER in self.lines[i - 1] for i in range(first, last + 1) if i - 1 < len(self.lines)):
            return
        self.findings.append(Finding(self.rel, node.lineno, what, fix))

    def check_import(self, node: ast.Import | ast.ImportFrom, ctx: Context) -> None:
        names = [a.name.split(".")[0] for a in node.names] if isinstance(node, ast.Import) else \
            [(node.module or "").split(".")[0]] if not node.level else []
        bad = sorted(set(names) & UNIX_MODULES)
        if bad and "platform" not in ctx.guards and not ctx.caught & IMPORT_ERRORS:
            self.flag(node, f"import of {', '.join(bad)} (absent on Windows)",
                      "import it lazily inside try/except ImportError, or use filelock/psutil")

    def check_expr(self, node: ast.AST, ctx: Context) -> None:
        attr_guarded = bool(ctx.guards & {"platform", "hasattr"}) or bool(ctx.caught & ATTRIBUTE_ERRORS)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            mod, name = node.value.id, node.attr
            if mod == "signal" and name in UNIX_SIGNALS and not attr_guarded:
                self.flag(node, f"signal.{name} (absent on Windows)",
                          f'guard it with hasattr(signal, "{name}") or use getattr(signal, "{name}", None)')
            elif mod == "os" and name in UNIX_OS and not attr_guarded:
                self.flag(node, f"os.{name} (absent on Windows)",
                          f'guard it with hasattr(os, "{name}") or `if not system.WINDOWS`')
            elif (mod, name) in {("os", "name"), ("sys", "platform")} and self.rel != SYSTEM_MODULE:
                self.flag(node, f"{mod}.{name} read outside extension/system.py",
                          "the trainer cannot import cloudlora.system: test the capability (try/hasattr, psutil), "
                          f"or end the line with '{MARKER} <why>'" if self.rel.startswith("cloud_backend/") else
                          "branch on cloudlora.system.WINDOWS/MACOS/LINUX")
        if not isinstance(node, ast.Call):
            return
        for kw in node.keywords:
            if kw.arg in {"preexec_fn", "pass_fds"} and "platform" not in ctx.guards and not _empty(kw.value) \
                    and not (isinstance(kw.value, ast.IfExp) and _guarded_ifexp(kw.value)):
                self.flag(kw.value, f"{kw.arg}= (Windows has none: Popen asserts not pass_fds)",
                          f"pass it only when not system.WINDOWS")
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "kill" and isinstance(func.value, ast.Name) \
                and func.value.id == "os" and len(node.args) == 2 and isinstance(node.args[1], ast.Constant) \
                and node.args[1].value == 0 and "platform" not in ctx.guards:
            self.flag(node, "os.kill(pid, 0) as a liveness probe (on Windows signal 0 is CTRL_C_EVENT)",
                      "use psutil.pid_exists / the processes helper")


def _empty(value: ast.AST) -> bool:
    return (isinstance(value, ast.Constant) and value.value is None) or \
        (isinstance(value, (ast.Tuple, ast.List)) and not value.elts)


def _guarded_ifexp(node: ast.IfExp) -> bool:
    """`() if system.WINDOWS else (fd,)`: the Windows side is empty."""
    if "platform" in when_true(node.test):
        return _empty(node.orelse)
    if "platform" in when_false(node.test):
        return _empty(node.body)
    return False


# --- entry points ----------------------------------------------------------------------------------------------------


def check_source(rel: str, source: str) -> list[Finding]:
    checker = _Checker(rel, source)
    checker.block(ast.parse(source, filename=rel).body, Context())
    return checker.findings


def scanned_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        path = root / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(p for p in sorted(path.rglob("*.py")) if "__pycache__" not in p.parts)
    return files


def check_tree(root: Path) -> list[Finding]:
    findings: list[Finding] = []
    for path in scanned_files(root):
        rel = path.relative_to(root).as_posix()
        findings.extend(check_source(rel, path.read_text(encoding="utf-8")))
    return findings


if __name__ == "__main__":
    found = check_tree(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]))
    print("\n".join(map(str, found)) or "no Unix-only calls outside a platform guard")
    sys.exit(1 if found else 0)
