"""Why a training job failed, in plain words with the fix: from SageMaker's FailureReason or the log's tail.

Facts first: the trainer's own failure file (output/failure, which SageMaker passes on as its FailureReason) and its
exit code (the local runner's "exited with code N"). Text found elsewhere in a traceback is not a fact: a traceback
that merely names torch.OutOfMemoryError (an AttributeError on torch 2.1) is not an out-of-memory error.
Pure functions. Unknown reasons come back as the raw text, so nothing is hidden.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Explanation:
    cause: str  # a short id: "quota", "image", "passrole", "oom", "config", "dataset", "unknown", ...
    message: str  # plain words
    fix: str  # what to do; "" when we don't know
    raw: str  # the original reason, for the curious

    def text(self) -> str:
        return self.message + (f"\nFix: {self.fix}" if self.fix else "")

    def as_dict(self) -> dict:
        return {"cause": self.cause, "message": self.message, "fix": self.fix, "raw": self.raw}


# (cause, pattern, message, fix). The first match wins, so specific patterns go first.
# {instance} is filled from the caller, {error} with the error's last line ("ValueError: ...").
_RULES: list[tuple[str, str, str, str]] = [
    ("interrupted",
     r"`cloudlora resume [^`]+`",
     "The job was interrupted before it finished (it did not fail by itself).",
     "Resume it (the Resume button, `cloudlora resume ID`): it continues from its last checkpoint and ends with the "
     "same LoRA as an uninterrupted run."),
    # Exit 4: the trainer's own catch-all (cloud_backend/trainer/__main__.py). Its words come first: they may
    # mention a config or a dataset without being about either.
    ("bug",
     r"The trainer failed unexpectedly: |exited with code 4\b",
     "The trainer stopped on an unexpected error (exit 4): {error}\nThis is a bug in the trainer, not in your "
     "data or settings.",
     "Report it with the job's log (the traceback is in it: the Logs panel, or `cloudlora logs JOB_ID`). Meanwhile, `cloudlora doctor` checks the trainer "
     "environment; creating the job again with other settings may avoid the failing path."),
    ("quota",
     r"ResourceLimitExceeded|account-level service limit '([^']*)'|limit .* is 0 Instances|Quota.*exceeded|"
     r"current utilization: \d+ Instances.*request delta",
     "Your AWS account has no (or not enough) quota for {instance} training instances in this region. "
     "New accounts start at 0 for GPU types.",
     "Request a quota increase in the Service Quotas console: SageMaker → \"{instance} for training job usage\" "
     "(and \"for spot training job usage\" when Spot is on), or pick another instance type."),
    ("spot_capacity",
     r"InsufficientCapacity|Insufficient capacity|MaxWaitTimeExceeded",
     "AWS had no (spot) capacity for {instance} within the wait time.",
     "Retry later, raise the max wait, turn Spot off, or choose another instance type or region."),
    ("passrole",
     r"iam:PassRole|PassRole|not authorized to perform: iam:PassRole",
     "You are not allowed to pass the SageMaker execution role to the training job (AccessDenied on iam:PassRole).",
     "Give your user/role iam:PassRole on the execution role with the condition iam:PassedToService = "
     "sagemaker.amazonaws.com (the stack from `cloudlora setup` creates such a policy), or check the role ARN."),
    ("image",
     r"(?i)(image|repository).{0,80}(does not exist|not found|cannot be found|doesn't exist)|"
     r"CannotPullContainerError|ImageNotFound|Requested image .* not found|failed to pull",
     "The trainer image could not be pulled from ECR: it is missing or the URI is wrong.",
     "Run `cloudlora setup` to build and push the trainer image, or fix the image URI in the settings "
     "(account, region, repository and tag must match)."),
    # Exit 3 (EXIT_OOM) and the words its failure file starts with (OOM_HINT), both written only when the trainer
    # judged the exception to be an out-of-memory error; else CUDA's own words (a trainer that died before it could
    # judge, or SageMaker's reason).
    ("oom",
     r"(?m)^The GPU ran out of memory\.|exited with code 3\b|CUDA out of memory|CUBLAS_STATUS_ALLOC_FAILED",
     "The GPU ran out of memory.",
     "Lower train_batch_size or resolution, enable gradient_checkpointing and cache_latents, use a smaller "
     "network_dim, or choose an instance with more VRAM (e.g. ml.g6e.xlarge, 48 GB)."),
    # The trainer ended with an exception and no failure file of its own (the runner wrote the exit code).
    ("trainer_error",
     r"The trainer exited with code -?\d+\.\n(?s:.*)(Traceback|Error)",
     "The trainer stopped on an error: {error}",
     "The whole traceback is in the job's log (the Logs panel, or `cloudlora logs JOB_ID`). `cloudlora doctor` "
     "checks the trainer environment."),
    ("config",
     r"ConfigError|training config has problems|config\.toml|Invalid (Kohya )?config|unknown (config )?key|bad config|"
     r"Invalid value for|TOML",
     "The training config was rejected.",
     "Open the config, press \"Format config Params\" (or run `cloudlora config check FILE`) and fix the keys "
     "it names."),
    ("dataset",
     r"(?i)no <repeats>_<trigger> folder|dataset.{0,80}(not found|does not exist|is empty|is missing|no images|"
     r"no training images)|"
     r"NoSuchKey|No S3 objects found under S3 URL|S3 (key|prefix|object).{0,40}(not found|does not exist)|"
     r"no images",
     "The dataset (or the model) was not found where the job looked, or it is empty.",
     "Check that the dataset and model are uploaded (`cloudlora dataset list`, `cloudlora model list`) and "
     "were not deleted, then create the job again."),
    ("access",
     r"AccessDenied|not authorized|Forbidden",
     "The job was denied access to an AWS resource (S3 bucket, ECR or KMS).",
     "Make sure the execution role can read the bucket's models/ and datasets/ and write jobs/, and pull from "
     "the ECR repository; `cloudlora doctor` checks this."),
    ("stopped_sigterm",
     r"stopped by (the )?user|StoppedByUser",
     "The job was stopped.", ""),
]


def explain(reason: str | None, log_tail: str = "", *, instance_type: str = "") -> Explanation | None:
    """The plain-words explanation of a failure; None when there is nothing to explain."""
    reason = (reason or "").strip()
    text = f"{reason}\n{log_tail or ''}"
    if not text.strip():
        return None
    instance = instance_type or _instance_in(text) or "the chosen"
    for cause, pattern, message, fix in _RULES:
        m = re.search(pattern, text)
        if m:
            fmt = {"instance": instance, "error": _error_line(reason, log_tail)}
            return Explanation(cause, message.format(**fmt), fix.format(**fmt), reason or _last_error(log_tail))
    raw = reason or _last_error(log_tail)
    return Explanation("unknown", raw, "", raw)


def _instance_in(text: str) -> str:
    m = re.search(r"\bml\.[a-z0-9]+\.[a-z0-9]+\b", text)
    return m.group(0) if m else ""


def _error_line(reason: str, log: str) -> str:
    """The error itself: what follows "failed unexpectedly:" in the reason, else the log's last error line."""
    m = re.search(r"The trainer failed unexpectedly: (.+)", reason or "")
    return m.group(1).strip()[:1024] if m else (_last_error(f"{reason}\n{log}") or "(no error line in the log)")


def _last_error(log: str) -> str:
    """The most telling line of a log: the last 'Error'/'Traceback' line, else the last non-empty line."""
    lines = [line.strip() for line in (log or "").splitlines() if line.strip()]
    for line in reversed(lines):
        if re.search(r"Error|Exception|error:", line):
            return line[:1024]
    return lines[-1][:1024] if lines else ""
