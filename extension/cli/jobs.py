"""`cloudlora jobs`, `job show|rm`, `logs`, `stop`, `resume`, `pull`: follow and finish training jobs."""
from __future__ import annotations

import sys

from .. import settings as settings_mod
from .output import add_json_flag, confirm, print_json, print_table


def register(subparsers) -> None:
    p = subparsers.add_parser("jobs", help="list training jobs (status, step, elapsed, cost)")
    add_json_flag(p)
    p.set_defaults(func=cmd_list)

    job = subparsers.add_parser("job", help="one training job: show, rm")
    sub = job.add_subparsers(dest="job_command", metavar="ACTION")
    show = sub.add_parser("show", help="status, step x/y, cost, loss, samples, log tail, failure explanation")
    show.add_argument("id")
    add_json_flag(show)
    show.set_defaults(func=cmd_show)
    rm = sub.add_parser("rm", help="delete a finished job's record and files in the store (not the pulled LoRA)")
    rm.add_argument("id")
    rm.add_argument("--yes", action="store_true", help="do not ask")
    rm.set_defaults(func=cmd_rm)
    job.set_defaults(func=lambda args: (job.print_help(), 2)[1])

    logs = subparsers.add_parser("logs", help="print a job's log (--follow until it ends)")
    logs.add_argument("id")
    logs.add_argument("--follow", "-f", action="store_true")
    logs.set_defaults(func=cmd_logs)

    stop = subparsers.add_parser("stop", help="stop a job (the trainer saves a checkpoint)")
    stop.add_argument("id")
    add_json_flag(stop)
    stop.set_defaults(func=cmd_stop)

    resume = subparsers.add_parser("resume", help="resume a stopped or failed job from its last checkpoint")
    resume.add_argument("id")
    resume.add_argument("--wait", action="store_true", help="follow the job; pull the LoRA when it completes")
    add_json_flag(resume)
    resume.set_defaults(func=cmd_resume)

    pull = subparsers.add_parser("pull", help="put a completed job's LoRA into the Lora folder")
    pull.add_argument("id")
    pull.add_argument("--lora-dir", help="target folder (default: the WebUI's / the lora_dir setting)")
    pull.add_argument("--file", help="an intermediate output (e.g. NAME-000002.safetensors) instead of the final")
    pull.add_argument("--as-lora", action="store_true",
                      help="with --file: that epoch becomes the LoRA (under the LoRA's name; the job's own untouched "
                           "earlier copy is replaced)")
    add_json_flag(pull)
    pull.set_defaults(func=cmd_pull)


def cmd_list(args) -> int:
    from ..jobs import service

    jobs = service.list_jobs(settings_mod.resolve())
    if args.json:
        print_json(jobs)
        return 0
    rows = [[j["id"], j["lora_name"], j["model"], j["dataset"], j["instance_type"],
             j["status"] + (f" ({j['secondary_status']})" if j["secondary_status"] and j["status"] != "Completed"
                            else ""),
             f"{j['step']}/{j['total_steps']}" if j["total_steps"] else "", j["elapsed"], j["cost"]] for j in jobs]
    if not rows:
        print("No training jobs yet. Create one with `cloudlora train --model M --dataset D`.")
        return 0
    print_table(rows, ["ID", "LORA", "MODEL", "DATASET", "INSTANCE", "STATUS", "STEP", "ELAPSED", "COST"])
    return 0


def cmd_show(args) -> int:
    from ..jobs import service

    job = service.get_job(args.id, settings_mod.resolve())
    if args.json:
        print_json(job)
        return 0
    prog = job["progress"]
    print(f"{job['id']}  {prog['state']}")
    print(f"  LoRA {job['lora_name']} · model {job['model']} ({job['family']}) · dataset {job['dataset']}")
    print(f"  {job['backend']} {job['instance_type']}" + (" spot" if job["spot"] else ""))
    if prog["text"]:
        print(f"  {prog['text']}")
    if job["loss_points"]:
        last = job["loss_points"][-1]
        print(f"  loss {last['loss']:.4f} at step {last['step']} ({len(job['loss_points'])} points)")
    if job.get("best_epoch"):
        from ..jobs.results import best_epoch

        print(f"  {best_epoch.text(job['best_epoch'])}")
    for s in job["samples"][-4:]:
        print(f"  sample {s}")
    for o in job["outputs"]:
        print(f"  output {o}")
    for p in job["pulled"]:
        print(f"  pulled {p}")
    if job.get("explanation"):
        print(f"  why: {job['explanation']['message']}")
        if job["explanation"].get("fix"):
            print(f"  fix: {job['explanation']['fix']}")
    if job.get("phases"):
        from ..jobs.results import phases

        print("  --- where the time went (phase, time, share, peak GPU, peak host) ---")
        for row in phases.table(job["phases"]):
            print("  " + "  ".join(row))
    if job["log_tail"]:
        print("  --- log tail ---")
        for line in job["log_tail"][-15:]:
            print(f"  {line}")
    return 0


def cmd_rm(args) -> int:
    from ..jobs import service

    if not confirm(f"Delete the record and store files of job {args.id}?", args.yes):
        return 1
    out = service.delete_record(args.id, settings_mod.resolve())
    print(f"Deleted job {out['id']}.")
    return 0


def cmd_logs(args) -> int:
    from ..jobs import service

    try:
        for line in service.follow_logs(args.id, settings_mod.resolve(), follow=args.follow):
            print(line, flush=True)
    except BrokenPipeError:
        pass
    return 0


def cmd_stop(args) -> int:
    from ..jobs import service

    out = service.stop_job(args.id, settings_mod.resolve())
    if args.json:
        print_json(out)
    else:
        print(f"{out['id']}: {out['message']}")
    return 0


def cmd_resume(args) -> int:
    from ..jobs import service

    settings = settings_mod.resolve()
    out = service.resume_job(args.id, settings)
    if args.wait:
        from .train import wait_and_report

        print(f"{out['id']}: {out['message']}", file=sys.stderr)
        return wait_and_report(out["id"], settings, as_json=args.json)
    if args.json:
        print_json(out)
    else:
        print(f"{out['id']}: {out['message']}")
        print(f"Follow it: cloudlora logs {out['id']} --follow", file=sys.stderr)
    return 0


def cmd_pull(args) -> int:
    from ..jobs import service

    out = service.pull_job(args.id, settings_mod.resolve(), lora_dir=args.lora_dir, file=args.file,
                           as_lora=args.as_lora)
    if args.json:
        print_json(out)
    else:
        print(out["message"])
        if out.get("sidecar"):
            print(f"  sidecar {out['sidecar']}")
        if out.get("preview"):
            print(f"  preview {out['preview']}")
    return 0
