"""What a training job is (JobSpec) and the checks run before anything is submitted.

Every check raises a UserError that names the thing and the fix, so nothing is submitted that would fail for a
reason we could have told the user first.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, fields

from ..errors import UserError
from ..settings import Settings
from .sagemaker_backend import instances

FAMILIES = ("sd15", "sdxl", "flux")
FAMILY_LABELS = {"sd15": "SD 1.5", "sdxl": "SDXL", "flux": "FLUX.1"}
BACKENDS = ("local", "sagemaker")
CONTAINERS = ("cloudlora", "kohya-sample")  # our trainer image | the SageMaker Kohya sample's image
# No Windows device name ('NUL', 'com1.v2': a device, not a file in models/Lora) and no trailing dot or space.
LORA_NAME_RE = re.compile(r"^(?!(?i:con|prn|aux|nul|com[1-9]|lpt[1-9])(?:[. ]|$))[A-Za-z0-9][A-Za-z0-9._ -]{0,99}"
                          r"(?<![. ])$")
INSTANCE_RE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
MAX_RUNTIME_LIMIT_S = 28 * 24 * 3600  # SageMaker's ceiling for MaxRuntimeInSeconds
DEFAULT_MAX_RUNTIME_S = 24 * 3600
DEFAULT_MAX_WAIT_S = 48 * 3600


@dataclass
class JobSpec:
    model: str  # store name of the base checkpoint
    dataset: str  # store name of the dataset
    family: str  # "sd15" | "sdxl"
    config: str  # the Kohya TOML text
    lora_name: str  # the file stem of the LoRA in models/Lora
    backend: str = "local"  # "local" | "sagemaker"
    instance_type: str = instances.LOCAL
    spot: bool = True  # SageMaker only
    max_wait_s: int = DEFAULT_MAX_WAIT_S  # spot: how long to wait for capacity, incl. run time
    max_runtime_s: int = DEFAULT_MAX_RUNTIME_S
    container: str = "cloudlora"
    image_uri: str = ""  # "" = the settings' image
    warm_pool_s: int = 0  # SageMaker warm pool keep-alive; 0 = off (quota is 0 by default)
    continue_from: str = ""  # a LoRA to start from: "job:<id>", a path, or a file in the Lora folder (continue_from.py)
    job_id: str = ""
    created: str = ""
    client_token: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "JobSpec":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def default_lora_name(dataset: str, triggers: list[str]) -> str:
    """The LoRA name the tab and `cloudlora train` propose: the trigger word names what the LoRA teaches; the
    dataset's name only when no trigger can be a file name."""
    for t in triggers or []:
        if LORA_NAME_RE.fullmatch(t or "") and not t.endswith((".", " ")):
            return t
    return dataset or ""


def new_client_token() -> str:
    return uuid.uuid4().hex


def normalise(spec: JobSpec, settings: Settings) -> JobSpec:
    """Fills the defaults that come from the settings (backend, instance, image) and tidies names."""
    spec.model = (spec.model or "").strip()
    spec.dataset = (spec.dataset or "").strip()
    spec.lora_name = (spec.lora_name or "").strip()
    spec.family = {"sd 1.5": "sd15", "sd1.5": "sd15", "sd1": "sd15", "sd15": "sd15", "sdxl": "sdxl",
                   "flux.1": "flux", "flux1": "flux", "": ""}.get((spec.family or "").strip().lower(),
                                                                  (spec.family or "").strip().lower())
    if spec.instance_type in ("", "Local (this machine)"):
        spec.instance_type = instances.LOCAL
    if not spec.backend:
        spec.backend = "local" if spec.instance_type == instances.LOCAL else settings.effective_backend
    if spec.backend == "local":
        spec.instance_type = instances.LOCAL
    elif spec.instance_type == instances.LOCAL:
        spec.instance_type = settings.instance_type or "ml.g5.2xlarge"
    if spec.backend == "sagemaker" and not spec.image_uri:
        spec.image_uri = settings.image_uri
    if not spec.client_token:
        spec.client_token = new_client_token()
    return spec


def read_manifest(store, kind: str, name: str) -> dict:
    """The store's manifest of a model or dataset; UserError naming the fix when it is not there."""
    noun = "model" if kind == "models" else "dataset"
    if not name:
        raise UserError(f"No {noun} chosen.", f"Pick a {noun} from the store (`cloudlora {noun} list`).")
    try:
        data = json.loads(store.get_bytes(f"{kind}/{name}/manifest.json"))
    except FileNotFoundError:
        raise UserError(
            f"The {noun} '{name}' is not in the store ({store.uri(kind)}).",
            f"Upload it first (Cloud Asset Management, or `cloudlora {noun} upload PATH --name {name}`), or pick "
            f"one that `cloudlora {noun} list` shows.",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"The manifest of {noun} '{name}' is damaged ({err}).",
                        f"Upload the {noun} again (`cloudlora {noun} upload PATH --name {name}`).") from err
    except Exception as err:  # a store error (S3) that is not "missing"
        if "NoSuchKey" in str(err) or "404" in str(err):
            raise UserError(f"The {noun} '{name}' is not in the store ({store.uri(kind)}).",
                            f"Upload it first, or pick one that `cloudlora {noun} list` shows.") from None
        raise
    return data


def check_config(text: str, family: str) -> list[str]:
    """Validates the Kohya TOML with the trainer's own checker; returns its warnings, raises on errors."""
    if not (text or "").strip():
        raise UserError("The training config (config_params) is empty.",
                        "Use the family's defaults (`cloudlora config defaults --family sd15`) and edit from there.")
    try:
        from cloudlora_backend.trainer.config import train_config as trainer_config
    except ImportError:  # the trainer's checker has not landed in this checkout: at least parse the TOML
        import tomlkit

        try:
            tomlkit.parse(text)
        except Exception as err:
            raise UserError(f"The training config is not valid TOML: {err}",
                            "Fix the line it names (strings need quotes, tables [name]).") from err
        return []
    report = trainer_config.check(text, family=family)
    if report.errors:
        raise UserError("The training config has problems:\n- " + "\n- ".join(report.errors),
                        "Fix the keys named above (\"Format config Params\" or `cloudlora config check FILE` "
                        "shows the same list).")
    return list(report.warnings)


def validate(spec: JobSpec, settings: Settings, store) -> dict:
    """Every check before submitting. Returns {"model": manifest, "dataset": manifest, "warnings": [...]}."""
    if not spec.lora_name:
        raise UserError("No LoRA name given.", "Type a name for the LoRA, e.g. 'mydog_v1'.")
    if not LORA_NAME_RE.fullmatch(spec.lora_name) or spec.lora_name.endswith((".", " ")):
        raise UserError(f"The LoRA name '{spec.lora_name}' cannot be a file name in models/Lora.",
                        "Use letters, digits, '-', '_', '.' or spaces (max 100), starting with a letter or digit.")
    if spec.backend not in BACKENDS:
        raise UserError(f"Unknown backend '{spec.backend}'.", "Use 'local' or 'sagemaker'.")
    if spec.container not in CONTAINERS:
        raise UserError(f"Unknown container '{spec.container}'.", f"Use one of {', '.join(CONTAINERS)}.")
    model = read_manifest(store, "models", spec.model)
    dataset = read_manifest(store, "datasets", spec.dataset)
    model_family = str(model.get("family") or "unknown")
    if not spec.family:
        spec.family = model_family if model_family in FAMILIES else ""
    if spec.family not in FAMILIES:
        raise UserError(f"FM Type '{spec.family or '(none)'}' is not supported for training.",
                        "Choose SD 1.5 (sd15), SDXL (sdxl) or FLUX.1 (flux).")
    if model_family in FAMILIES and model_family != spec.family:
        raise UserError(
            f"The model '{spec.model}' is {FAMILY_LABELS[model_family]}, but the job is set to "
            f"{FAMILY_LABELS[spec.family]}.",
            f"Set FM Type to {FAMILY_LABELS[model_family]} (--set is not needed: the CLI picks it from the model), "
            "or pick a model of the other family.",
        )
    if model_family not in FAMILIES and model_family != "unknown":
        raise UserError(f"The model '{spec.model}' is a {model_family} checkpoint, which this trainer does not train.",
                        "Use an SD 1.5, SDXL or FLUX.1 checkpoint.")
    warnings = check_config(spec.config, spec.family)
    if spec.family == "flux":
        from .flux import check_job

        warnings += check_job(spec)
    if spec.continue_from and spec.family == "flux":
        raise UserError("Continue training is not implemented for FLUX.1 (only for SD 1.5 and SDXL).",
                        "Start a new FLUX.1 LoRA, or continue an SD 1.5 / SDXL one.")
    if spec.continue_from and spec.container == "kohya-sample":
        raise UserError("Continue training needs this trainer's image: the Kohya sample container has no channel for "
                        "the LoRA to start from.", "Choose the Cloud LoRA trainer image, or start a new LoRA.")
    if spec.max_runtime_s <= 0 or spec.max_runtime_s > MAX_RUNTIME_LIMIT_S:
        raise UserError(f"Max runtime {spec.max_runtime_s} s is out of range.",
                        f"Use 1 s to {MAX_RUNTIME_LIMIT_S} s (28 days).")
    if spec.backend == "sagemaker":
        _validate_sagemaker(spec, settings, store)
    return {"model": model, "dataset": dataset, "warnings": warnings}


def _validate_sagemaker(spec: JobSpec, settings: Settings, store) -> None:
    if not INSTANCE_RE.fullmatch(spec.instance_type or ""):
        raise UserError(f"'{spec.instance_type}' is not a SageMaker instance type.",
                        "Pick one from the list, e.g. ml.g5.2xlarge.")
    if getattr(store, "kind", "") != "s3" or not settings.bucket:
        raise UserError("SageMaker training needs the store in an S3 bucket, and no bucket is set.",
                        "Run `cloudlora setup` (or set the bucket in Cloud Asset Management), upload the model and "
                        "dataset there, or train locally (backend 'local').")
    if not settings.role_arn:
        raise UserError("No SageMaker execution role is set.",
                        "Run `cloudlora setup` (it creates the role) or set CLOUDLORA_ROLE_ARN / the role setting.")
    if not re.match(r"^arn:aws[a-z-]*:iam::\d{12}:role/", settings.role_arn):
        raise UserError(f"'{settings.role_arn}' is not an IAM role ARN.",
                        "Use the role ARN from the stack's outputs (arn:aws:iam::<account>:role/<name>).")
    if not spec.image_uri:
        raise UserError("No trainer image URI is set for SageMaker.",
                        "Run `cloudlora setup` (it builds and pushes the image) or set CLOUDLORA_IMAGE_URI.")
    if len(spec.image_uri) > 255:
        raise UserError("The trainer image URI is longer than 255 characters.", "Check the image URI setting.")
    if spec.spot:
        if spec.max_wait_s < spec.max_runtime_s:
            raise UserError(f"With Spot, max wait ({spec.max_wait_s} s) must be at least max runtime "
                            f"({spec.max_runtime_s} s).", "Raise max wait, or lower max runtime.")
        if spec.max_wait_s > MAX_RUNTIME_LIMIT_S:
            raise UserError(f"Max wait {spec.max_wait_s} s is over SageMaker's limit.", "Use at most 28 days.")
    if spec.warm_pool_s < 0 or spec.warm_pool_s > 3600:
        raise UserError(f"Warm pool keep-alive {spec.warm_pool_s} s is out of range.", "Use 0 (off) to 3600 s.")
