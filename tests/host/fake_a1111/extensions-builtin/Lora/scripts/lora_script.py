"""The built-in Lora extension's script: `import networks` works because this folder is on sys.path while it loads."""
import networks  # noqa: F401  (also makes it sys.modules["networks"], which other extensions use to rescan)
import ui_extra_networks_lora
from modules import script_callbacks, ui_extra_networks


def before_ui():
    ui_extra_networks.register_page(ui_extra_networks_lora.ExtraNetworksPageLora())


script_callbacks.on_before_ui(before_ui)
