"""shared.opts, shared.cmd_opts, shared.OptionInfo and shared.interrogator, as the glue uses them."""
import types

from modules.options import OptionInfo, Options  # noqa: F401  (A1111 re-exports OptionInfo in shared)

opts = Options()
cmd_opts = types.SimpleNamespace(api=False, nowebui=False, api_auth=None, lora_dir=None, server_name=None, share=False,
                                 cors_allow_origins=None)


class _Interrogator:
    def interrogate(self, image):
        return f"a photo, {image.size[0]}x{image.size[1]} {image.mode}"


interrogator = _Interrogator()
