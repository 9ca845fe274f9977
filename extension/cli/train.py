"""`cloudlora train`: create a training job (locally or on SageMaker), optionally --wait for it and pull the LoRA.

--model and --dataset take a name in the store, or a local path: a checkpoint file or a dataset folder/zip is
uploaded to the store first (deduplicated by content, so a second run does not upload it again). A zip is extracted
as the tab extracts it (dataset_import.import_zip). The estimate (time, and cost on SageMaker) is printed before
anything is uploaded or created.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path, PureWindowsPath

from .. import settings as settings_mod
from ..errors import UserError
from ..jobs.sagemaker_backend import instances
from ..jobs.spec import DEFAULT_MAX_RUNTIME_S, DEFAULT_MAX_WAIT_S, FAMILIES, JobSpec
from .output import print_json


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="create a training job (local or SageMaker); --wait follows it",
                              description=__doc__)
    p.add_argument("--model", required=True, help="model name in the store, or a local checkpoint file")
    p.add_argument("--dataset", required=True, help="dataset name in the store, or a local folder/zip")
    p.add_argument("--config", help="Kohya TOML file (default: the family's defaults)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change one config key, e.g. --set max_train_steps=200 (repeatable)")
    p.add_argument("--backend", choices=["local", "sagemaker"], help="default: the settings' backend")
    p.add_argument("--instance-type", help=f"SageMaker instance type, e.g. {', '.join(instances.sagemaker_names()[:3])}")
    p.add_argument("--spot", dest="spot", action="store_true", default=True, help="managed spot (default)")
    p.add_argument("--no-spot", dest="spot", action="store_false", help="on-demand instances")
    p.add_argument("--max-runtime", type=int, default=DEFAULT_MAX_RUNTIME_S, metavar="SECONDS")
    p.add_argument("--max-wait", type=int, default=DEFAULT_MAX_WAIT_S, metavar="SECONDS",
                   help="spot: the longest wait for capacity, incl. the run (>= --max-runtime)")
    p.add_argument("--family", choices=list(FAMILIES), help="default: detected from the model")
    p.add_argument("--name", help="the LoRA's name (default: the trigger word, as the tab proposes; else the "
                                  "dataset's name)")
    p.add_argument("--container", choices=["cloudlora", "kohya-sample"], default="cloudlora",
                   help="SageMaker image contract: ours, or the SageMaker Kohya sample's")
    p.add_argument("--image-uri", help="SageMaker trainer image (default: the settings')")
    p.add_argument("--warm-pool", type=int, default=0, metavar="SECONDS",
                   help="SageMaker warm pool keep-alive (0 = off; the account quota is 0 by default)")
    p.add_argument("--continue-from", default="", metavar="LORA",
                   help="start from a LoRA's weights: job:<id> (a completed job's LoRA), a .safetensors path, or a "
                        "file in the Lora folder (same family; network_dim must match unless dim_from_weights)")
    p.add_argument("--client-token", help="idempotency token: the same token returns the same job")
    p.add_argument("--wait", action="store_true", help="follow the job; pull the LoRA when it completes")
    p.add_argument("--lora-dir", help="with --wait: where the LoRA goes (default: the settings' Lora folder)")
    p.add_argument("--json", action="store_true", help="print the job as JSON")
    p.set_defaults(func=cmd_train)


def looks_like_path(value: str) -> bool:
    """True for a path written the POSIX or the Windows way: `./x`, `~/x`, `a/b`, `a\\b`, `C:\\x`, `C:x`, `\\\\srv\\share`.

    Judged by the text alone, the same on every OS, so `D:\\data\\ds` typed on Windows is never looked up as a
    store name (the local store would build `models/D:\\data\\ds/manifest.json` under its root)."""
    return ("/" in value or "\\" in value or value.startswith((".", "~"))
            or bool(PureWindowsPath(value).drive) or os.path.isabs(value))


def _resolve(kind: str, value: str, store) -> tuple[str, object]:
    """("name", store name) or ("path", local path to upload), deciding nothing by surprise.

    A value with a '/' or '\\', a drive ('C:'), or starting with '.' or '~' is a path (`looks_like_path`; a store name
    can hold none of these). A bare word is a store name; only when the store has
    nothing under that name and a file or folder of that name exists here is it a path. A store copy that is
    half-uploaded (files, no manifest) is an error naming both choices, never a silent upload of ./NAME."""
    from ..jobs.spec import read_manifest

    if not looks_like_path(value):
        if store.head(f"{kind}s/{value}/manifest.json") is not None:
            return "name", value
        half = next(iter(store.list(f"{kind}s/{value}/")), None) is not None
        here = Path(value).exists()
        if half:
            raise UserError(
                f"The {kind} '{value}' in the store is half-uploaded (its files are there, its manifest is not)"
                + (f", and ./{value} exists here too: which one did you mean?" if here else "."),
                (f"To upload ./{value}, pass it as a path: --{kind} ./{value}. " if here else "")
                + f"To finish the store's copy, upload it again: cloudlora {kind} upload PATH --name {value}; "
                f"or clear it: cloudlora {kind} rm {value} --yes")
        if not here:
            read_manifest(store, f"{kind}s", value)  # raises: not in the store, with the fix
        return "path", Path(value)
    path = Path(value).expanduser()
    if not path.exists():
        raise UserError(f"{path} does not exist.", f"Pass a {kind} name from the store or an existing path.")
    return "path", path


def _upload(kind: str, path: Path, store, family: str | None = None) -> str:
    print(f"Uploading {kind} {path} to the store ...", file=sys.stderr)
    if kind == "model":
        from ..assets import models

        manifest = models.upload_model(store, path, name=None, family=family)
    else:
        from ..assets import datasets

        manifest = datasets.upload_dataset(store, path, name=None)
    print(f"  -> {kind} '{manifest['name']}'", file=sys.stderr)
    if manifest.get("rename_note"):
        print(f"note: {manifest['rename_note']}", file=sys.stderr)
    return manifest["name"]


def _dataset_folder(path: Path) -> Path:
    """A zip becomes the folder the tab would make of it (the same import function); a folder stays itself."""
    if path.is_file() and path.suffix.lower() == ".zip":
        from .. import display
        from ..assets import dataset_import

        root = dataset_import.import_zip(path)
        print(f"Extracted {display.name(path.name)} into {display.name(root)}", file=sys.stderr)
        return root
    return path


def print_estimate(config: str, *, family: str, images_per_epoch: int, backend: str, instance_type: str,
                   spot: bool) -> None:
    """The job's estimate on stderr, as the tab shows it before Create (a CPU job over an hour starts "Warning:")."""
    from ..jobs.results import estimate
    from ..jobs import service

    est = estimate.estimate(config, family=family, images_per_epoch=images_per_epoch, instance_type=instance_type,
                            backend=backend, spot=spot, **service.local_device(backend))
    print(f"Estimate: {est.summary()}", file=sys.stderr)


def build_config(args, family: str) -> str:
    from cloudlora_backend.trainer.config import train_config as kohya_config

    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise UserError(f"Config file {path} does not exist.", "Pass the path of a Kohya .toml file.")
        text = path.read_text(encoding="utf-8")
    else:
        text = kohya_config.default_toml(family)
    updates = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r} is not KEY=VALUE.", "Write it like --set max_train_steps=200.")
        updates[key.strip()] = value
    if updates:
        try:
            text = kohya_config.set_keys(text, updates, family)
        except kohya_config.ConfigError as err:
            raise UserError(f"--set: {err}", "Use sd-scripts key names (`cloudlora config defaults`).") from err
    return text


def cmd_train(args) -> int:
    from ..jobs import service
    from ..jobs.spec import read_manifest
    from ..store import open_store

    settings = settings_mod.resolve({"backend": args.backend, "instance_type": args.instance_type})
    store = open_store(settings)
    # Everything is checked before anything is uploaded: a bad dataset or config must not cost a model upload.
    (mkind, mvalue), (dkind, dvalue) = _resolve("model", args.model, store), _resolve("dataset", args.dataset, store)
    family = args.family
    if mkind == "path":
        from ..assets import models

        family = models.family_of(mvalue, family)
    elif not family:
        family = str(read_manifest(store, "models", mvalue).get("family") or "")
    family = family if family in FAMILIES else "sd15"
    if dkind == "path":
        from ..assets import datasets

        dvalue = _dataset_folder(dvalue)
        summary = datasets.check_or_raise(dvalue).summary or {}
    else:
        summary = read_manifest(store, "datasets", dvalue)
    triggers = list(summary.get("triggers") or [])
    config = build_config(args, family)
    from cloudlora_backend.trainer.config import train_config as kohya_config

    report = kohya_config.check(config, family)
    if report.errors:
        raise UserError("The config has problems; nothing was uploaded:\n" + "\n".join(f"- {e}" for e in report.errors),
                        "Fix them (`cloudlora config check FILE` lists them), then run the command again.")
    backend = args.backend or settings.effective_backend
    instance_type = (args.instance_type or settings.instance_type) if backend == "sagemaker" else instances.LOCAL
    print_estimate(config, family=family, images_per_epoch=int(summary.get("images_per_epoch") or
                                                              summary.get("images") or 1),
                   backend=backend, instance_type=instance_type, spot=args.spot)
    model = _upload("model", mvalue, store, args.family) if mkind == "path" else mvalue
    dataset = _upload("dataset", dvalue, store) if dkind == "path" else dvalue
    from ..jobs.spec import default_lora_name

    spec = JobSpec(model=model, dataset=dataset, family=family, config=config,
                   lora_name=args.name or default_lora_name(dataset, triggers), backend=backend,
                   instance_type=instance_type,
                   spot=args.spot, max_wait_s=args.max_wait, max_runtime_s=args.max_runtime,
                   container=args.container, image_uri=args.image_uri or "", warm_pool_s=args.warm_pool,
                   client_token=args.client_token or "", continue_from=args.continue_from)
    job = service.create_job(spec, settings, progress=lambda s: print(s, file=sys.stderr))
    for w in job.get("warnings") or []:
        print(f"warning: {w}", file=sys.stderr)
    if not job.get("created", True):
        print(f"A job with this client token exists already: {job['id']}", file=sys.stderr)
    if not args.wait:
        if args.json:
            print_json(job)
        else:
            est = job.get("estimate") or {}
            print(f"{job['id']}  {job['status']}" + (f"  ({est.get('steps')} steps)" if est else ""))
            print(f"Follow it: cloudlora logs {job['id']} --follow", file=sys.stderr)
        return 0
    return wait_and_report(job["id"], settings, as_json=args.json, lora_dir=args.lora_dir)


def wait_and_report(job_id: str, settings, *, as_json: bool = False, lora_dir: str | None = None) -> int:
    from ..jobs import service

    tty = sys.stderr.isatty()
    last = [""]

    def show(info: dict) -> None:
        line = f"{info['status']}"
        if info.get("secondary_status") and info["status"] not in ("Training", "Completed"):
            line += f" ({info['secondary_status']})"
        if info.get("total_steps"):
            line += f" step {info['step']}/{info['total_steps']}"
        if info.get("loss_points"):
            line += f" loss {info['loss_points'][-1]['loss']:.4f}"
        # A terminal gets one line rewritten in place, with the time; a log gets a line per change only.
        if tty:
            print("\r" + (line + (f" ({info['elapsed']})" if info.get("elapsed") else "")).ljust(78), end="",
                  file=sys.stderr, flush=True)
        elif line != last[0]:
            print(line, file=sys.stderr, flush=True)
        last[0] = line

    if lora_dir:  # --lora-dir for this run: pull explicitly, not by auto-pull into the default folder
        info = _wait_no_autopull(job_id, settings, show)
    else:
        info = service.wait(job_id, settings, on_update=show)
    if tty:
        print(file=sys.stderr)
    if info["status"] == "Completed":
        pulled = info.get("pulled") or []
        if lora_dir or not pulled:
            result = service.pull_job(job_id, settings, lora_dir=lora_dir)
            pulled = [result["file"]]
            print(result["message"], file=sys.stderr)
        info = {**info, "pulled": pulled}
        if as_json:
            print_json({k: v for k, v in info.items() if k not in ("log_tail", "config")})
        else:
            print(f"{job_id} Completed. LoRA: {pulled[-1] if pulled else '(not pulled)'}")
        return 0
    exp = info.get("explanation") or {}
    if as_json:
        print_json({k: v for k, v in info.items() if k != "config"})
    print(f"{job_id} {info['status']}.", file=sys.stderr)
    if exp:
        print(f"error: {exp.get('message')}", file=sys.stderr)
        if exp.get("fix"):
            print(f"fix: {exp['fix']}", file=sys.stderr)
    elif info.get("failure"):
        print(info["failure"], file=sys.stderr)
    return 1


def _wait_no_autopull(job_id: str, settings, show) -> dict:
    import time

    from ..jobs import service
    from ..jobs.records import TERMINAL

    while True:
        info = service.get_job(job_id, settings, log_lines=20, auto_pull=False)
        show(info)
        if info["status"] in TERMINAL:
            return info
        time.sleep(1.0)
