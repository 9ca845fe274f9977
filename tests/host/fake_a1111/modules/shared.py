"""shared: cmd_opts, opts (with OptionInfo), the demo, as extensions use them."""
from modules.options import OptionInfo, Options  # noqa: F401  (A1111 offers OptionInfo here too)
from modules.shared_cmd_options import cmd_opts  # noqa: F401

opts = Options()
demo = None
