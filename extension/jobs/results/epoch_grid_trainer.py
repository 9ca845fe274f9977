"""Compare epochs in the standalone app (no WebUI txt2img there): the trainer renders each epoch file x LoRA weight on
the job's sample prompts with its own pipeline, in the trainer environment
(`python -m cloudlora_backend.trainer.loop.epoch_grid REQUEST.json`, cloud_backend/trainer/loop/epoch_grid.py), and
this side reads its progress lines and its PNGs back for epoch_grid.compose.

The base model is the job's own: a local job's model channel (input/data/model), else the model's file(s) from the
store, kept in <data dir>/cache/base-models for the next comparison.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from ... import bootstrap, private_files, processes
from ...errors import UserError

MODULE = "cloudlora_backend.trainer.loop.epoch_grid"


def trainer_python(settings) -> str:
    """The trainer's interpreter, as local jobs resolve it; said plainly when it is not set up yet."""
    from ..local_backend import trainer_env

    python, ready = trainer_env.resolve(settings)
    if not ready:
        raise UserError("Comparing epochs in the standalone app renders with the trainer, whose environment is not "
                        f"set up yet ({trainer_env.venv_dir()}).",
                        "Run one Local training job (it creates the environment: torch and the trainer's packages, "
                        "a few GB), or set CLOUDLORA_TRAINER_PYTHON.")
    return python


def base_model(rec, settings) -> Path:
    """The job's base model on this machine: a local job's model channel, else a copy from the store."""
    if rec.local_dir:
        channel = Path(rec.local_dir) / "input" / "data" / "model"
        if channel.is_dir() and any(channel.iterdir()):
            return channel
    from ...settings import data_dir
    from ..job_store import open_job_store

    key = rec.model_file
    if not key:
        raise UserError(f"The job '{rec.id}' names no base model.", "Compare the epochs of another job.")
    store = open_job_store(settings)
    if getattr(store, "kind", "") == "local":
        path = Path(store.uri(key))
        if path.exists():
            return path
    dest = data_dir() / "cache" / "base-models" / key
    if not dest.exists():
        try:
            store.download(key, dest)
        except FileNotFoundError:
            raise UserError(f"The job's base model {key} is no longer in the store.",
                            "Upload the model again (Cloud Asset Management or `cloudlora model upload`).") from None
    return dest


def request(rec, files, weights, prompts, model: Path, out_dir: Path) -> dict:
    from cloudlora_backend.trainer.config import train_config as kohya_config

    try:
        cfg = kohya_config.parse(rec.spec.config or "", rec.spec.family)
    except kohya_config.ConfigError:
        cfg = kohya_config.parse("", rec.spec.family)
    return {"model": str(model), "family": rec.spec.family, "loras": [str(p) for _label, p in files],
            "weights": list(weights), "sampler": cfg.sample_sampler, "resolution": list(cfg.resolution_wh),
            "out_dir": str(out_dir),
            "prompts": [{"prompt": p.prompt, "negative": p.negative, "width": p.width, "height": p.height,
                         "steps": p.steps, "cfg_scale": p.cfg_scale, "seed": p.seed} for p in prompts]}


def render(state, rec, files, weights, prompts, settings) -> list:
    """images[prompt][epoch][weight] (PIL), rendered by the trainer; state.done follows its progress."""
    from PIL import Image

    from ...settings import data_dir

    python = trainer_python(settings)
    state.message = "loading the base model in the trainer"
    model = base_model(rec, settings)
    work = data_dir() / "cache" / "epoch-grid" / rec.id
    shutil.rmtree(work, ignore_errors=True)
    private_files.ensure_dir(work)
    try:
        req = work / "request.json"
        private_files.write_text(req, json.dumps(request(rec, files, weights, prompts, model, work / "cells")))
        error, tail = "", []
        with open(work / "trainer.log", "wb") as log:
            proc = subprocess.Popen(bootstrap.command(python, "-m", MODULE, str(req)), stdout=subprocess.PIPE,
                                    stderr=log, stdin=subprocess.DEVNULL, env=processes.child_env(), cwd=str(work))
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").strip()
                if line.startswith("cell "):
                    state.done = int(line.split()[1].split("/")[0])
                    state.message = f"rendering {state.done}/{state.total}"
                elif line.startswith("error: "):
                    error = line[len("error: "):]
                elif line:
                    tail.append(line)
            code = proc.wait()
        if code != 0:
            if error:
                raise UserError(f"Comparing epochs stopped: {error}", "Fix what it names, then Compare epochs again.")
            tail += (work / "trainer.log").read_text(encoding="utf-8", errors="replace").splitlines()
            raise UserError(f"The trainer's renderer exited with {code}: " + " / ".join(tail[-3:]),
                            f"See {work / 'trainer.log'}; `cloudlora doctor` checks the trainer environment.")
        cells = json.loads((work / "cells" / "manifest.json").read_text(encoding="utf-8"))["cells"]
        by = {(c["prompt"], c["lora"], float(c["weight"])): c["file"] for c in cells}
        images = []
        for p in range(len(prompts)):
            block = []
            for e in range(len(files)):
                row = []
                for w in weights:
                    with Image.open(work / "cells" / by[(p, e, float(w))]) as im:
                        row.append(im.convert("RGB"))
                block.append(row)
            images.append(block)
        return images
    finally:
        shutil.rmtree(work / "cells", ignore_errors=True)
