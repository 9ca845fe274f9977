"""checkpoints_list / list_models(): scans models_path/Stable-diffusion like A1111 (title = "name [hash]")."""
import os

from modules import paths

checkpoints_list = {}
list_models_calls = 0


class CheckpointInfo:
    def __init__(self, filename):
        self.filename = filename
        self.title = f"{os.path.basename(filename)} [0123abcd]"


def list_models():
    global list_models_calls
    list_models_calls += 1
    checkpoints_list.clear()
    folder = os.path.join(paths.models_path, "Stable-diffusion")
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith((".safetensors", ".ckpt")):
            info = CheckpointInfo(os.path.join(folder, name))
            checkpoints_list[info.title] = info
