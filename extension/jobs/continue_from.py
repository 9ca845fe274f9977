"""Continue training from a LoRA: a finished job's LoRA or any Kohya LoRA of the same family (a file in the Lora
folder, or a path), sent to the trainer as the job's `network` channel with `network_weights` naming it.

The trainer (cloud_backend/trainer/network/network_setup.py) loads it as sd-scripts' `network_weights` does; here the file
is checked from its header only (no torch): it must exist, be a Kohya LoRA (LoRA, LoCon or DoRA, not LoHa/LoKr or
a diffusers/PEFT file) and be of the job's family. A new job starts from the file's weights; resuming an
interrupted job is something else (its checkpoint).

Values accepted (the tab, `cloudlora train --continue-from`, REST `continue_from`): "job:<id>" (that job's final
LoRA), a path, or a file name in the Lora folder (as the tab lists them).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError

FAMILY_LABELS = {"sd15": "SD 1.5", "sdxl": "SDXL"}
JOB_PREFIX = "job:"


def lora_choices(settings, family: str | None = None) -> list[str]:
    """The Kohya LoRAs in the Lora folder (relative paths), of `family` when given, newest first."""
    from cloudlora_backend.trainer.model.family import NotSafetensorsError, detect_lora, read_safetensors_header

    from ..library.pull import lora_dir

    folder = lora_dir(settings)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.rglob("*.safetensors"):
        try:
            fam, kind = detect_lora(read_safetensors_header(path))
        except NotSafetensorsError:
            continue
        if kind == "kohya" and (family is None or fam == family):
            found.append((path.stat().st_mtime, str(path.relative_to(folder))))
    return [name for _, name in sorted(found, reverse=True)]


def resolve(value: str, settings, family: str | None = None) -> Path:
    """The LoRA file a continue_from value names (checked against `family` when given). Raises UserError."""
    path = _find(value, settings)
    if family:
        check(path, family)
    return path


def _find(value: str, settings) -> Path:
    value = (value or "").strip()
    if value.startswith(JOB_PREFIX):
        return _job_lora(value[len(JOB_PREFIX):].strip(), settings)
    path = Path(value).expanduser()
    if path.is_file():
        return path
    from ..library.pull import lora_dir

    in_folder = lora_dir(settings) / value
    if in_folder.is_file():
        return in_folder
    raise UserError(f"The LoRA to continue from, '{value}', was not found (as a path or in {lora_dir(settings)}).",
                    "Pick one from the list, give the path of a .safetensors LoRA, or job:<id> of a finished job.")


def _job_lora(job_id: str, settings) -> Path:
    from ..library import pull as lib
    from ..store import open_store
    from .results import outputs
    from . import records

    rec = records.load(open_store(settings), job_id)
    if rec is None:
        raise UserError(f"No training job '{job_id}' to continue from.", "List the jobs with `cloudlora jobs`.")
    if rec.status != "Completed":
        raise UserError(f"The job '{job_id}' is {rec.status}: only a completed job's LoRA can be continued.",
                        "Wait for it to complete (an interrupted job resumes from its own checkpoint instead).")
    final = lib.pick_final(outputs.model_dir(rec, settings), rec.spec.lora_name)
    if final is None:
        raise UserError(f"The job '{job_id}' left no LoRA file.", f"Look at its log (`cloudlora logs {job_id}`).")
    return final


def check(path: Path, family: str) -> None:
    """The file is a Kohya LoRA of `family`. Raises UserError with the reason and the fix."""
    from cloudlora_backend.trainer.model.family import NotSafetensorsError, detect_lora, read_safetensors_header

    try:
        fam, kind = detect_lora(read_safetensors_header(path))
    except NotSafetensorsError as err:
        raise UserError(f"The LoRA to continue from is not usable: {err}", "Pick a .safetensors Kohya LoRA.") from err
    if kind != "kohya":
        what = {"loha": "a LyCORIS LoHa", "lokr": "a LyCORIS LoKr", "diffusers": "a diffusers/PEFT LoRA"}.get(
            kind, "not a LoRA")
        raise UserError(f"{path.name} is {what}: only Kohya LoRA, LoCon and DoRA files (lora_down/lora_up keys) can "
                        "be continued.", "Pick a LoRA trained by this trainer, sd-scripts or kohya_ss.")
    if fam and fam != family:
        raise UserError(f"{path.name} is an {FAMILY_LABELS.get(fam, fam)} LoRA, but the job is "
                        f"{FAMILY_LABELS.get(family, family)}.",
                        f"Continue it on an {FAMILY_LABELS.get(fam, fam)} model, or pick another LoRA.")


def stage_local(jobdir: Path, path: Path) -> str:
    """Links (or copies) the LoRA into the local job's network channel; returns its name for network_weights."""
    import shutil

    dest = jobdir / "input" / "data" / "network" / path.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        try:
            dest.symlink_to(path.resolve())
        except OSError:
            shutil.copy2(path, dest)
    return path.name


def network_key(job_id: str, path: Path) -> str:
    """Where a SageMaker job's network channel lives in the bucket."""
    return f"jobs/{job_id}/network/{path.name}"


def staged_local(jobdir: Path) -> str:
    """The name of the LoRA a local job continues from ("" when it starts fresh), for its resumed runs."""
    folder = jobdir / "input" / "data" / "network"
    files = sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []
    return files[0] if files else ""


def staged_s3(store, job_id: str) -> str:
    """The key of the LoRA a SageMaker job continues from ("" when it starts fresh), for its resumed runs."""
    keys = sorted(o.key for o in store.list(f"jobs/{job_id}/network/") if o.key.endswith(".safetensors"))
    return keys[0] if keys else ""


def stage_s3(store, job_id: str, path: Path) -> str:
    """Uploads the LoRA (a few MB) for the SageMaker job's network channel; returns its key."""
    key = network_key(job_id, path)
    store.put_bytes(key, path.read_bytes())
    return key
