"""checkpoints_list / list_models(): the checkpoints in models/Stable-diffusion (and --ckpt-dir); title "name [hash]"."""
import hashlib
import os

from modules import paths, shared

checkpoints_list = {}


class CheckpointInfo:
    def __init__(self, filename):
        self.filename = filename
        self.name = os.path.basename(filename)
        self.shorthash = hashlib.sha256(filename.encode()).hexdigest()[:8]  # A1111 hashes the file; the name will do
        self.title = f"{self.name} [{self.shorthash}]"


def list_models():
    checkpoints_list.clear()
    for folder in (os.path.join(paths.models_path, "Stable-diffusion"), shared.cmd_opts.ckpt_dir):
        if not folder or not os.path.isdir(folder):
            continue
        for root, _dirs, files in os.walk(folder):
            for name in sorted(files):
                if name.endswith((".safetensors", ".ckpt")):
                    info = CheckpointInfo(os.path.join(root, name))
                    checkpoints_list[info.title] = info
