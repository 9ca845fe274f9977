"""cmd_opts: the WebUI's flags plus those the extensions' preload.py add (the built-in Lora's --lora-dir)."""
import launch
from modules import cmd_args, script_loading
from modules.paths_internal import extensions_builtin_dir, extensions_dir

parser = cmd_args.parser
script_loading.preload_extensions(extensions_dir, parser,
                                  extension_list=launch.list_extensions(launch.args.ui_settings_file))
script_loading.preload_extensions(extensions_builtin_dir, parser)
cmd_opts = parser.parse_args()
