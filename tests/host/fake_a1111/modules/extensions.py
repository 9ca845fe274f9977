"""The installed extensions: built-in first, then extensions/, each sorted by folder name (A1111 1.10.1)."""
import os

from modules import shared
from modules.paths_internal import extensions_builtin_dir, extensions_dir

extensions = []


class Extension:
    def __init__(self, name, path, is_builtin):
        self.name = name
        self.canonical_name = name
        self.path = path
        self.is_builtin = is_builtin
        self.enabled = True

    def list_files(self, subdir, extension):
        from modules import scripts

        dirpath = os.path.join(self.path, subdir)
        if not os.path.isdir(dirpath):
            return []
        res = [scripts.ScriptFile(self.path, name, os.path.join(dirpath, name)) for name in sorted(os.listdir(dirpath))]
        return [x for x in res if os.path.splitext(x.path)[1].lower() == extension and os.path.isfile(x.path)]


def active():
    return [x for x in extensions if x.enabled]


def list_extensions():
    extensions.clear()
    if shared.cmd_opts.disable_all_extensions:
        return
    for dirname in (extensions_builtin_dir, extensions_dir):
        if not os.path.isdir(dirname) or (dirname == extensions_dir and shared.cmd_opts.disable_extra_extensions):
            continue
        for name in sorted(os.listdir(dirname)):
            path = os.path.join(dirname, name)
            if os.path.isdir(path):
                extensions.append(Extension(name, path, is_builtin=dirname == extensions_builtin_dir))
