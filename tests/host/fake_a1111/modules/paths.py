"""modules.paths: what extensions read (models_path honours --models-dir and --data-dir)."""
from modules.paths_internal import data_path, extensions_builtin_dir, extensions_dir, models_path, script_path  # noqa: F401
