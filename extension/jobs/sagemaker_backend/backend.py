"""The SageMaker backend behind the lifecycle's interface (cloudlora.jobs.backend_interface): CreateTrainingJob, its status
and CloudWatch logs (sagemaker.py does the AWS calls)."""
from __future__ import annotations

from collections import deque
from typing import Iterator

from ...settings import Settings
from ..backend_interface import Inputs, InputsFor, Live
from ..records import TERMINAL, JobRecord
from . import sagemaker

log_cache: dict[str, tuple[dict, deque]] = {}  # job id -> (CloudWatch tokens, the last lines)


def place(rec: JobRecord, store) -> None:
    rec.sagemaker_name = rec.id  # a resume runs as <id>-r<N>


def submit(rec: JobRecord, inputs: Inputs, settings: Settings, store, say=lambda s: None) -> None:
    """Stages a LoRA to continue from (if any) and sends CreateTrainingJob; a refusal starts nothing."""
    from .. import continue_from

    network = continue_from.stage_s3(store, rec.id, inputs.weights) if inputs.weights is not None else ""
    sagemaker.create(settings, rec.spec, model_key=inputs.model_key, dataset_name=inputs.dataset, store=store,
                     part_keys=inputs.part_keys, hyperparameters=inputs.hyperparameters, network_key=network,
                     captioner_key=_captioner(store, inputs, say))


def _captioner(store, inputs: Inputs, say=lambda s: None) -> str:
    """The captioner channel's store prefix ("" for none): downloaded once, its files sent to the store once."""
    from .. import job_captions

    return job_captions.upload(store, inputs.captioner, say) if inputs.captioner else ""


def refresh(rec: JobRecord, settings: Settings, *, with_logs: bool = False) -> None:
    """Asks SageMaker; its end states are final, so a finished job that needs nothing more is not asked again."""
    if rec.status in TERMINAL and rec.updated and (rec.pulled or not rec.auto_pull or rec.status != "Completed"):
        return
    st = sagemaker.status_from(sagemaker.describe(settings, rec.sagemaker_name or rec.id))
    rec.status, rec.secondary_status = st["status"], st["secondary_status"]
    rec.started, rec.ended = st["started"], st["ended"]
    rec.billable_s, rec.training_s = st["billable_s"], st["training_s"]
    rec.failure, rec.output_uri = st["failure"], st["output_uri"]
    if with_logs:
        log_lines(rec, settings)


def log_lines(rec: JobRecord, settings: Settings) -> list[str]:
    """The job's CloudWatch lines so far (only the new ones are fetched); the step x/y comes from them."""
    from ..results.steps import last_step

    tokens, lines = log_cache.get(rec.id, ({}, deque(maxlen=2000)))
    new, tokens = sagemaker.log_events(settings, rec.sagemaker_name or rec.id, tokens)
    lines.extend(new)
    log_cache[rec.id] = (tokens, lines)
    step, total, _ = last_step("\n".join(lines))
    if total:
        rec.step, rec.total_steps = step, total
    return list(lines)


def stop(rec: JobRecord, settings: Settings) -> str:
    return sagemaker.stop(settings, rec.sagemaker_name or rec.id)


def resume(rec: JobRecord, settings: Settings, store, inputs: InputsFor) -> str:
    """A new SageMaker job <id>-r<N> starts from the old job's checkpoint prefix."""
    from ..continue_from import staged_s3

    network = staged_s3(store, rec.id)  # the LoRA it continues from, if any: the same channel again
    given = inputs(network.rsplit("/", 1)[-1] if network else "")
    name = sagemaker.resume(settings, rec.spec, attempt=rec.resumes + 1, model_key=given.model_key, store=store,
                            part_keys=given.part_keys, network_key=network, hyperparameters=given.hyperparameters,
                            captioner_key=_captioner(store, given))
    rec.earlier_billable_s += rec.billable_s
    rec.earlier_training_s += rec.training_s
    rec.billable_s = rec.training_s = 0
    rec.sagemaker_name = name
    prefix = sagemaker.checkpoint_prefix(rec.id)
    log_cache.pop(rec.id, None)
    if any(True for _ in store.list(prefix)):
        return f"resumed as SageMaker job {name}: it continues from the checkpoint in {store.uri(prefix)}"
    return f"resumed as SageMaker job {name}: no checkpoint was saved, so it starts from step 0"


def delete(rec: JobRecord) -> None:
    log_cache.pop(rec.id, None)  # SageMaker keeps nothing on this machine but the mirrored files (the lifecycle's)


def logs(rec: JobRecord, settings: Settings, *, follow: bool, interval: float) -> Iterator[str]:
    if follow:
        yield from sagemaker.follow(settings, rec.sagemaker_name or rec.id, interval=max(interval, 5.0))
    else:
        yield from sagemaker.log_events(settings, rec.sagemaker_name or rec.id)[0]


def live(rec: JobRecord, settings: Settings, store) -> Live:
    from ..results import outputs

    art = outputs.artifacts_dir(rec)
    return Live(log_text="\n".join(log_cache.get(rec.id, ({}, []))[1]),
                tensorboard_dir=outputs.sync_tensorboard(rec, settings, store),
                samples=sorted(art.rglob("*.png")) if art.exists() else [])


def cost(rec: JobRecord) -> tuple[float | None, float | None]:
    spec = rec.spec
    c = sagemaker.cost(spec.instance_type, rec.billable_s + rec.earlier_billable_s,
                       rec.training_s + rec.earlier_training_s, spec.spot)
    return c["cost_usd"], c["spot_savings"]
