"""shared.opts, shared.cmd_opts, shared.OptionInfo, shared.interrogator, shared.state and shared.sd_model (an SD 1.5
checkpoint is "loaded"), as the glue uses them."""
import types

from modules.options import OptionInfo, Options  # noqa: F401  (A1111 re-exports OptionInfo in shared)

opts = Options()
cmd_opts = types.SimpleNamespace(api=False, nowebui=False, api_auth=None, lora_dir=None, server_name=None, share=False,
                                 cors_allow_origins=None)


class _Interrogator:
    def interrogate(self, image):
        return f"a photo, {image.size[0]}x{image.size[1]} {image.mode}"


interrogator = _Interrogator()


class _State:
    """shared.state: begin/end around a generation, as A1111's API does."""
    def __init__(self):
        self.job = ""

    def begin(self, job="(unknown)"):
        self.job = job

    def end(self):
        self.job = ""


state = _State()


class _CheckpointInfo:
    title = "tiny-sd15.safetensors [0123abcd]"


class _SdModel:
    """The loaded checkpoint: A1111 sets is_sdxl / is_sd2 / is_sd1 on it."""
    is_sdxl = False
    is_sd2 = False
    is_sd1 = True
    sd_checkpoint_info = _CheckpointInfo()
    title = _CheckpointInfo.title


sd_model = _SdModel()
