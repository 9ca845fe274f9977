"""A job's outputs on this machine: SageMaker's artifacts and TensorBoard events fetched, the LoRA files listed and
installed into the Lora folder (the file, sidecar and preview; see library/pull.py)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ...errors import UserError
from ...settings import Settings, data_dir
from ..local_backend import local
from ..records import JobRecord

log = logging.getLogger(__name__)


def artifacts_dir(rec: JobRecord) -> Path:
    return data_dir() / "jobs" / rec.id / "model"


def sync_tensorboard(rec: JobRecord, settings: Settings, store) -> Path:
    """Mirrors the job's TensorBoard events from S3 (SageMaker syncs them while it runs); only changed files."""
    dest = data_dir() / "jobs" / rec.id / "tensorboard"
    prefix = f"jobs/{rec.id}/tensorboard/"
    try:
        for info in store.list(prefix):
            target = dest / info.key[len(prefix):]
            if not target.exists() or target.stat().st_size != info.size:
                store.download(info.key, target)
    except Exception as err:  # the curve is a nice-to-have; the status must still show
        log.info("cloudlora: TensorBoard sync of %s failed: %s", rec.id, err)
    return dest


def model_dir(rec: JobRecord, settings: Settings) -> Path:
    """Where the job's outputs are on this machine; SageMaker's model.tar.gz is fetched and unpacked once."""
    if rec.spec.backend == "local":
        return local.model_dir(Path(rec.local_dir))
    dest = artifacts_dir(rec)
    if not dest.exists() or not any(dest.rglob("*.safetensors")):
        from ...library.pull import extract_artifacts
        from ..sagemaker_backend import sagemaker

        if not rec.output_uri:
            raise UserError(f"The job '{rec.id}' has no output yet (status {rec.status}).",
                            "Pull it once it is Completed.")
        tar = dest.parent / "model.tar.gz"
        dest.parent.mkdir(parents=True, exist_ok=True)
        sagemaker.download_output(settings, rec.output_uri, tar)
        extract_artifacts(tar, dest)
        tar.unlink(missing_ok=True)
    return dest


def lora_outputs(rec: JobRecord) -> list[Path]:
    """The final and intermediate LoRA files already on this machine."""
    from ...library.pull import lora_files

    if rec.spec.backend == "local":
        return lora_files(local.model_dir(Path(rec.local_dir)))
    return lora_files(artifacts_dir(rec))


def _own_untouched_copy(rec: JobRecord, final: Path | None) -> Path | None:
    """The job's earlier pulled final LoRA, if it is still there with the job's tensors (nobody replaced it)."""
    from ...library.pull import data_digest

    if final is None:
        return None
    for entry in reversed(rec.pulled):
        path = Path(entry.get("file") or "")
        if entry.get("final", True) and path.is_file():
            try:
                if data_digest(path) == data_digest(final) or data_digest(path) == entry.get("digest"):
                    return path
            except (OSError, ValueError):
                continue
    return None


def pull_files(rec: JobRecord, settings: Settings, *, lora_dir=None, file: str | None = None, as_lora: bool = False):
    """Installs the final LoRA (or the output named `file`) with sidecar and preview; returns (PullResult, final).

    as_lora: the output named `file` (a chosen epoch) becomes the job's LoRA, under the LoRA's name; the job's own
    earlier copy of the final LoRA is replaced if nobody changed it, else a free name is taken."""
    from ...library import pull as lib

    mdir = model_dir(rec, settings)
    final = lib.pick_final(mdir, rec.spec.lora_name) if rec.status == "Completed" else None
    if file and final is not None and file in (final.name, final.stem, str(final)):
        file = None  # the final file, picked by name
    replace = None
    if file:
        matches = [p for p in lib.lora_files(mdir) if file in (p.name, p.stem, str(p))]
        if not matches:
            names = ", ".join(p.name for p in lib.lora_files(mdir)) or "none yet"
            raise UserError(f"The job '{rec.id}' has no output file '{file}'.", f"Pick one of: {names}.")
        src, name = matches[0], matches[0].stem
        if as_lora:
            name = rec.spec.lora_name
            own = _own_untouched_copy(rec, final)
            replace = own.stem if own is not None and own.parent == lib.lora_dir(settings, lora_dir) else None
    else:
        src = final
        if src is None:
            raise UserError(f"The job '{rec.id}' completed but wrote no .safetensors file in {mdir}.",
                            "Look at the job's log (`cloudlora logs ID`).")
        name = rec.spec.lora_name
    base_sidecar = {}
    trainer_sidecar = mdir / f"{rec.spec.lora_name}.json"
    if trainer_sidecar.exists():
        try:
            base_sidecar = json.loads(trainer_sidecar.read_text(encoding="utf-8"))
        except ValueError:
            base_sidecar = {}
    samples = local.samples(Path(rec.local_dir)) if rec.spec.backend == "local" else []
    preview = lib.pick_preview(mdir, rec.spec.lora_name, samples)
    side = lib.sidecar(family=rec.spec.family, triggers=rec.triggers, model=rec.spec.model, dataset=rec.spec.dataset,
                       steps=rec.total_steps or rec.step, job_id=rec.id, base=base_sidecar)
    if as_lora and file:
        side["notes"] += f"\nChosen epoch file: {src.name}"
    result = lib.install(src, lib.lora_dir(settings, lora_dir), name, sidecar_data=side, preview=preview,
                         replace_stem=replace)
    return result, file is None or as_lora


SAMPLE_INDEX = "index.json"  # the trainer's samples/index.json (cloud_backend/trainer/loop/sampling.label)


def sample_info(paths: list[Path]) -> list[dict]:
    """What each sample is, from the trainer's index.json beside it: {epoch, step, prompt, seed, ...}, `label` (one
    line for a gallery caption: "epoch 2 · step 60 · seed 42 · <prompt>") and `path`, ordered by step. A sample the
    index does not know (an older trainer, the fake one) gets its file name as label."""
    indexes: dict[Path, dict] = {}
    out = []
    for p in paths:
        folder = p.parent
        if folder not in indexes:
            try:
                raw = json.loads((folder / SAMPLE_INDEX).read_text(encoding="utf-8"))
                indexes[folder] = {e["file"]: e for e in raw if isinstance(e, dict) and isinstance(e.get("file"), str)}
            except (OSError, ValueError, TypeError):
                indexes[folder] = {}
        entry = dict(indexes[folder].get(p.name) or {})
        if entry:
            parts = [f"epoch {entry.get('epoch')}", f"step {entry.get('step')}", f"seed {entry.get('seed')}"]
            entry["label"] = " · ".join(parts) + f" · {entry.get('prompt', '')}"
        else:
            entry["label"] = p.name
        entry["path"] = str(p)
        out.append(entry)
    # By step, so per-epoch and every-N-steps samples interleave as they were made; unknown ones first, by name.
    return sorted(out, key=lambda e: (e["step"] if isinstance(e.get("step"), int) else -1, e["path"]))
