"""txt2img like A1111 1.10.1's modules.processing, as the glue calls it (StableDiffusionProcessingTxt2Img +
process_images), without a model: the image is a deterministic colour pattern of the prompt, the seed and the
<lora:name:weight> tags whose files exist in the Lora folder right then (so a test sees which LoRA was applied).
Every call is recorded in `calls`."""
import hashlib
import os
import re
import threading

from modules import paths, shared

calls = []
_lock = threading.Lock()
LORA_RE = re.compile(r"<lora:([^:>]+):([^:>]+)>")


class StableDiffusionProcessingTxt2Img:
    def __init__(self, sd_model=None, prompt="", negative_prompt="", width=512, height=512, steps=20, cfg_scale=7.0,
                 seed=-1, sampler_name=None, batch_size=1, n_iter=1, do_not_save_samples=False,
                 do_not_save_grid=False, **kwargs):
        self.sd_model, self.prompt, self.negative_prompt = sd_model, prompt, negative_prompt
        self.width, self.height, self.steps, self.cfg_scale, self.seed = width, height, steps, cfg_scale, seed
        self.sampler_name, self.batch_size, self.n_iter = sampler_name, batch_size, n_iter
        self.do_not_save_samples, self.do_not_save_grid = do_not_save_samples, do_not_save_grid
        self.scripts = None
        self.closed = False

    def close(self):
        self.closed = True


class Processed:
    def __init__(self, images):
        self.images = images


def _lora_files():
    folder = getattr(shared.cmd_opts, "lora_dir", None) or os.path.join(paths.models_path, "Lora")
    found = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if name.endswith(".safetensors"):
                found[name[:-len(".safetensors")]] = os.path.join(root, name)
    return found


def process_images(p):
    from PIL import Image

    files = _lora_files()
    applied = [(name, float(w)) for name, w in LORA_RE.findall(p.prompt) if name in files]
    calls.append({"prompt": p.prompt, "seed": p.seed, "sampler": p.sampler_name, "width": p.width,
                  "height": p.height, "applied": applied, "model": getattr(p.sd_model, "title", ""),
                  "in_state": shared.state.job, "saves": not p.do_not_save_samples})
    digest = hashlib.sha256(f"{p.prompt}|{p.seed}|{applied}".encode()).digest()
    w, h = max(8, p.width // 8), max(8, p.height // 8)
    return Processed([Image.new("RGB", (w, h), tuple(digest[:3]))])
