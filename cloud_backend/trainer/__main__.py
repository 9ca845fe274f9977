"""The trainer entrypoint: `python -m cloudlora_backend.trainer [--root DIR]`, the SageMaker container contract.

Inputs under ROOT (default /opt/ml; the local backend points it at a job folder):
    input/config/hyperparameters.json   string values: output_name (the LoRA's name), optional family (sd15|sdxl|flux),
                                        config (the TOML's file name in the config channel), dataset_name (for the
                                        sidecar's notes), and any config key as an override (max_train_steps,
                                        learning_rate, ...); other keys are ignored
    input/data/model/     one checkpoint file (.safetensors/.ckpt) or a diffusers folder
    input/data/dataset/   the dataset root (kohya <repeats>_<trigger> folders, the kohya sample, or JumpStart)
    input/data/config/    config.toml (optional; else the kohya sample's own TOML, else the family's defaults)
    input/data/reg/       class images for prior preservation (optional)
    input/data/vae/       a separate VAE file or folder (optional)
    input/data/clip_l/ t5xxl/ ae/   FLUX.1's CLIP-L, T5-XXL and autoencoder files, when the model file holds only
                                    the transformer (flux1-dev.safetensors); an all-in-one file needs none
    input/data/network/   a Kohya LoRA to continue from (optional; network_weights names it when there are several)
    input/data/captioner/ the captioner when the config says caption = "wd14" (model.onnx + selected_tags.csv) or
                          "florence2" (a transformers Florence-2 folder); missing while caption is set: exit 1
Auto-captioning (caption = "wd14" | "florence2", captions/stage.py): the first phase ("caption" in the phases
summary) captions a working copy of the dataset, ROOT/work/dataset (the dataset channel is never written), by
caption_mode (keep, the default | append | replace), the trigger word first; the run trains on that copy, and the
caption files come back in model/captions/<path relative to the dataset root> with model/captions/captions.json
({"captioner", "mode", "files", "written"}). A resumed run reuses the copy (ROOT/work/captioned.json).
Outputs:
    model/<output_name>.safetensors (+ .json A1111 sidecar, .preview.png, samples/*.png, -NNNNNN epoch files)
    output/tensorboard/   TensorBoard events        output/failure    a plain-words reason when it fails
    output/effective-config.toml                    the config as trained (defaults and overrides applied)
    checkpoints/state.pt  resumable state; a run finding one continues from its step
    cache/                latents on disk, generated class images
stdout: one line per step, `step=120/1000 loss=0.0831 lr=0.0001 it/s=3.2`, flushed; at the end a summary of time
        and peak GPU/host memory per phase, and the same as one `phases={...}` JSON line (loop/phases.py).

Exit codes:
    0    completed: the LoRA is in model/
    1    the inputs need fixing (config, dataset, model, missing channel); output/failure says what and how
    3    out of GPU memory; output/failure suggests what to lower
    4    an unexpected error (a bug); output/failure has the error, stderr the traceback
    143  stopped after writing the checkpoint; run again to resume. A stop is SIGTERM (SageMaker stop, spot
         interruption; POSIX), the stop file ROOT/runner/stop-requested (the local backend's Stop; Windows has no
         SIGTERM to deliver), or, under the local runner (CLOUDLORA_RUNNER_PID), the runner's death
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

# Before torch loads OpenMP: spinning worker threads make CPU steps 5-20x slower on a shared machine (measured on
# 2 busy cores); on a GPU the CPU threads hardly matter. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

FLUX_PART_CHANNELS = ("clip_l", "t5xxl", "ae")  # FLUX.1's separate text encoders and autoencoder
EXIT_OK, EXIT_INPUT, EXIT_OOM, EXIT_BUG, EXIT_STOPPED = 0, 1, 3, 4, 143
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
STOP_FILE = Path("runner") / "stop-requested"  # under ROOT: the local backend's Stop writes it
# An out-of-memory error by its type: torch >= 2.5 has torch.OutOfMemoryError, torch 2.1-2.4 only
# torch.cuda.OutOfMemoryError; both are named so, so the name is checked through the MRO, not an attribute of torch.
OOM_TYPE_NAMES = ("OutOfMemoryError",)
# The allocators' own words, for errors raised as a plain RuntimeError (older torch, MPS).
OOM_MESSAGES = ("CUDA out of memory", "MPS backend out of memory")
OOM_HINT = ("The GPU ran out of memory. Lower train_batch_size (e.g. 1), set gradient_checkpointing = true and "
            "cache_latents = true, lower resolution or network_dim, or pick an instance type with more GPU memory.")


class InputError(ValueError):
    """A missing or unusable input; the message says which and how to fix it."""


def read_hyperparameters(root: Path) -> dict[str, str]:
    path = root / "input" / "config" / "hyperparameters.json"
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON: {err}") from err
    out = {}
    for k, v in raw.items():
        v = str(v)
        # The SageMaker Python SDK JSON-encodes every value ("\"abc\""): unwrap that too.
        if len(v) >= 2 and v[0] == v[-1] == '"':
            try:
                v = str(json.loads(v))
            except json.JSONDecodeError:
                pass
        out[k] = v
    return out


def find_model(channel: Path, what: str = "model") -> Path:
    if not channel.exists():
        raise InputError(f"The {what} channel {channel} is missing: the job has no base model.")
    if (channel / "model_index.json").is_file() or (channel / "unet").is_dir():
        return channel
    # A diffusers folder one level down, also as a link (the local store links it; rglob does not follow links).
    folders = sorted(p for p in channel.iterdir() if (p / "model_index.json").is_file())
    if folders:
        return folders[0]
    files = sorted(p for p in channel.rglob("*") if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES)
    dirs = sorted(p.parent for p in channel.rglob("model_index.json"))
    if dirs:
        return dirs[0]
    if len(files) == 1:
        return files[0]
    if not files:
        raise InputError(f"The {what} channel {channel} holds no .safetensors/.ckpt file or diffusers folder.")
    names = ", ".join(p.name for p in files[:5])
    raise InputError(f"The {what} channel {channel} holds several checkpoints ({names}); give the job exactly one.")


def find_optional(channel: Path) -> Path | None:
    if not channel.exists() or not any(channel.iterdir()):
        return None
    return find_model(channel, channel.name)


def read_config_text(root: Path, hp: dict, dataset: Path) -> tuple[str, list[Path]]:
    """The TOML text and the folders a sample_prompts file may live in."""
    from .data.layout import LayoutError, scan
    channel = root / "input" / "data" / "config"
    if channel.is_dir():
        name = hp.get("config", "")
        if name:
            path = channel / name
            if not path.is_file():
                raise InputError(f"The config channel has no {name!r} (hyperparameter \"config\").")
            return path.read_text(encoding="utf-8"), [channel, dataset]
        tomls = sorted(channel.glob("*.toml"))
        if len(tomls) == 1:
            return tomls[0].read_text(encoding="utf-8"), [channel, dataset]
        if len(tomls) > 1:
            raise InputError(f"The config channel holds several TOML files ({', '.join(p.name for p in tomls)}); "
                             "name one with the hyperparameter \"config\".")
    try:
        lay = scan(dataset)
    except LayoutError:
        lay = None
    if lay is not None and lay.config_file is not None:
        print(f"using the dataset's own config {lay.config_file.name} (kohya sample layout)", flush=True)
        return lay.config_file.read_text(encoding="utf-8"), [lay.config_file.parent, dataset]
    return "", [dataset]


def detect_family(model: Path) -> str | None:
    from .model.family import detect_path
    try:
        fam = detect_path(model)
    except Exception:  # noqa: BLE001 - the loader gives the precise error later
        return None
    return fam if fam in ("sd15", "sdxl", "flux") else None


def build_config(text: str, hp: dict, family: str | None):
    from .config import train_config as config
    overrides = {k: v for k, v in hp.items() if k in config.BY_NAME and k not in ("output_name",)}
    if overrides:
        if "max_train_steps" in overrides and "max_train_epochs" not in overrides:
            overrides["max_train_epochs"] = "0"  # an explicit step count wins over the TOML's epochs
        text = config.set_keys(text, overrides, family)
    cfg = config.parse(text, family)
    for warning in config.check(text, family).warnings:
        print(f"config warning: {warning}", flush=True)
    return cfg, config.format_toml(text, family)


def prepare(root: Path):
    from .loop.train import RunPaths
    hp = read_hyperparameters(root)
    data = root / "input" / "data"
    model = find_model(data / "model")
    dataset = data / "dataset"
    if not dataset.is_dir():
        raise InputError(f"The dataset channel {dataset} is missing: the job has no training images.")
    family = hp.get("family") or detect_family(model)
    if family in ("sd1", "sd15", "SD1", "SD 1.5"):
        family = "sd15"
    elif family in ("flux1", "FLUX.1", "Flux"):
        family = "flux"
    text, prompt_dirs = read_config_text(root, hp, dataset)
    cfg, effective = build_config(text, hp, family)
    from .loop.sampling import read_prompts
    read_prompts(cfg.sample_prompt_text, prompt_dirs)  # a missing prompts file fails now, not after model loading
    output_name = hp.get("output_name") or cfg.output_name or "lora"
    if any(ch in output_name for ch in '/\\:*?"<>|') or output_name.startswith("."):
        raise InputError(f"output_name {output_name!r} is not a valid file name; use letters, digits, - and _.")
    (root / "output").mkdir(parents=True, exist_ok=True)
    (root / "output" / "effective-config.toml").write_text(effective, encoding="utf-8")
    reg = data / "reg"
    from .network.network_setup import find_weights
    network_weights = find_weights(cfg.network_weights, data / "network")
    paths = RunPaths(
        model=model, dataset=dataset, model_dir=root / "model", tensorboard=root / "output" / "tensorboard",
        checkpoints=root / "checkpoints", cache=root / "cache", vae=find_optional(data / "vae"),
        reg=[reg] if reg.is_dir() else [], prompt_dirs=prompt_dirs, output_name=output_name,
        parts={p: f for p in FLUX_PART_CHANNELS if (f := find_optional(data / p)) is not None},
        # The local backend links the store's datasets/<name>; SageMaker copies it into a folder named "dataset".
        dataset_name=hp.get("dataset_name", "") or (dataset.resolve().name if dataset.is_symlink() else ""),
        network_weights=network_weights, model_sha256=hp.get("model_sha256", ""),
    )
    return cfg, paths


def input_errors() -> tuple:
    from .config.train_config import ConfigError
    from .data.dataset import DatasetError
    from .model.load import ModelLoadError
    from .loop.optim import OptimizerError
    from .loop.sampling import PromptError
    from .network.lora import LoraFileError
    from .captions.run import DatasetFolderError
    from .captions.wd14 import CaptionerError
    return (InputError, ConfigError, DatasetError, ModelLoadError, OptimizerError, PromptError, FloatingPointError,
            LoraFileError, CaptionerError, DatasetFolderError)


def is_oom(err: BaseException) -> bool:
    """Is this an out-of-GPU-memory error, on any torch the trainer runs under (2.1 has no torch.OutOfMemoryError)?
    Judged by the exception's type name or the allocator's own message, never by other text in it."""
    if any(cls.__name__ in OOM_TYPE_NAMES for cls in type(err).__mro__):
        return True
    return any(words in str(err) for words in OOM_MESSAGES)


class StopWatch:
    """Whether to stop after this step: SIGTERM (POSIX), the stop file (any OS), or the local runner gone (no
    parent-death signal off Linux: macOS reparents the trainer, Windows' Job object ends it anyway)."""

    def __init__(self, stop_file: Path, runner_pid: str = ""):
        self.stop_file = stop_file
        self.signalled = False
        self.told = False
        self.runner_pid = int(runner_pid) if runner_pid.isdigit() else 0
        self.parent = os.getppid() if self.runner_pid and hasattr(os, "getppid") else 0

    def __call__(self) -> bool:
        why = "a signal" if self.signalled else self._why()
        if why and not self.told:
            self.told = True
            print(f"stop requested ({why}): checkpointing after this step", flush=True)
        return bool(why)

    def _why(self) -> str:
        if self.stop_file.exists():
            return f"stop file {self.stop_file}"
        if self.parent and os.getppid() != self.parent:
            return "the local runner ended"
        return ""


def write_failure(root: Path, message: str) -> None:
    out = root / "output"
    out.mkdir(parents=True, exist_ok=True)
    (out / "failure").write_text(message.strip()[:4000] + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudlora_backend.trainer", description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", choices=["train"], help="SageMaker runs the image as `IMAGE train`")
    parser.add_argument("--root", default="/opt/ml", help="the job folder (default /opt/ml)")
    parser.add_argument("--stop-file", default="", help=f"a file whose appearance stops the run (default ROOT/{STOP_FILE})")
    args = parser.parse_args(argv)
    root = Path(args.root)
    started = time.perf_counter()  # before torch and diffusers import: the time to first step counts them
    stop = StopWatch(Path(args.stop_file) if args.stop_file else root / STOP_FILE,
                     os.environ.get("CLOUDLORA_RUNNER_PID", ""))

    def on_term(signum, _frame):
        stop.signalled = True
        print(f"received signal {signum}: checkpointing after this step", flush=True)

    signal.signal(signal.SIGTERM, on_term)
    try:
        # Its own clause: when this import fails (no torch, a torch too old for the libraries), the handlers
        # below must not name what it would have defined.
        from .loop.train import Stopped, Trainer
    except Exception as err:  # noqa: BLE001 - every failure must reach the failure file
        traceback.print_exc()
        write_failure(root, f"The trainer failed unexpectedly: {type(err).__name__}: {err}\n(while importing the "
                            "trainer's libraries: the trainer environment does not fit this trainer; the traceback "
                            "is in the job's log)")
        return EXIT_BUG
    try:
        cfg, paths = prepare(root)
        if cfg.family == "flux":
            from .flux.train import FluxTrainer as Trainer
        trainer = Trainer(cfg, paths, stop_flag=stop, started=started)
        if cfg.caption:  # the first phase: captions into a working copy, which the run then trains on
            from .captions.stage import caption_stage
            with trainer.clock.phase("caption"):
                paths.dataset = caption_stage(root, cfg, paths.dataset)
        trainer.setup()
        result = trainer.run()
        print(f"done: {result.lora} ({result.steps} steps, final loss {result.final_loss:.4f})", flush=True)
        return EXIT_OK
    except Stopped as err:
        print(str(err), flush=True)
        write_failure(root, f"Stopped: {err}.")
        return EXIT_STOPPED
    except input_errors() as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        write_failure(root, str(err))
        return EXIT_INPUT
    except Exception as err:  # noqa: BLE001 - every failure must reach the failure file
        if is_oom(err):
            print(f"error: {err}", file=sys.stderr, flush=True)
            write_failure(root, f"{OOM_HINT}\n({(str(err).splitlines() or [type(err).__name__])[0][:300]})")
            return EXIT_OOM
        traceback.print_exc()
        write_failure(root, f"The trainer failed unexpectedly: {type(err).__name__}: {err}")
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
