"""load_scripts as in A1111 1.10.1: every extension's scripts/*.py by file path, its folder on sys.path only then."""
import os
import sys
from collections import namedtuple

from modules import errors, extensions, script_callbacks, script_loading

ScriptFile = namedtuple("ScriptFile", ["basedir", "filename", "path"])


def list_scripts(scriptdirname, extension):
    scripts = []
    for ext in extensions.active():
        scripts += ext.list_files(scriptdirname, extension)
    return scripts


def list_files_with_name(filename):
    return [os.path.join(ext.path, filename) for ext in extensions.active()
            if os.path.isfile(os.path.join(ext.path, filename))]


def load_scripts():
    script_callbacks.clear_callbacks()
    syspath = sys.path
    for scriptfile in list_scripts("scripts", ".py"):
        try:
            sys.path = [scriptfile.basedir] + sys.path
            script_loading.load_module(scriptfile.path)
        except Exception:
            errors.report(f"Error loading script: {scriptfile.filename}", exc_info=True)
        finally:
            sys.path = syspath
