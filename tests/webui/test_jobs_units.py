"""Pure parts of the jobs area: TensorBoard events without TensorBoard, the estimate, failure words, LoRA metadata."""
from __future__ import annotations

import json
import struct
import subprocess

import pytest

from cloudlora.jobs.results import estimate, events, failures
from cloudlora.jobs.sagemaker_backend import instances
from cloudlora.jobs import service
from cloudlora.library import pull


def test_loss_points_are_read_from_real_tensorboard_files_without_tensorboard(tmp_path, trainer_python):
    # Written by torch's SummaryWriter in the trainer's env: simple_value scalars and a TF2-style tensor scalar.
    code = ("import sys\nfrom torch.utils.tensorboard import SummaryWriter\n"
            "w = SummaryWriter(sys.argv[1])\n"
            "[w.add_scalar('loss/current', 1.0 / (i + 1), i) for i in range(5)]\n"
            "w.add_scalar('loss/average', 0.5, 4, new_style=True)\n"
            "w.add_scalar('lr/unet', 1e-4, 4)\nw.close()\n")
    subprocess.run([trainer_python, "-c", code, str(tmp_path)], check=True)
    points = events.loss_points(tmp_path)
    assert [(p["tag"], p["step"], round(p["loss"], 4)) for p in points] == [
        ("loss/average", 4, 0.5), ("loss/current", 0, 1.0), ("loss/current", 1, 0.5), ("loss/current", 2, 0.3333),
        ("loss/current", 3, 0.25), ("loss/current", 4, 0.2)]


def test_a_growing_file_is_read_on_from_where_the_last_read_stopped(tmp_path):
    first = events.frame_record(events.encode_scalar_event("loss/current", 0.25, 7, 1.0))
    second = events.frame_record(events.encode_scalar_event("loss/current", 0.125, 8, 2.0))
    path = tmp_path / "events.out.tfevents.1"
    path.write_bytes(first + second[:10])  # the trainer is in the middle of writing step 8
    assert [(p["step"], p["loss"]) for p in events.loss_points(tmp_path)] == [(7, 0.25)]
    with open(path, "ab") as f:
        f.write(second[10:])
    assert [(p["step"], p["loss"]) for p in events.loss_points(tmp_path)] == [(7, 0.25), (8, 0.125)]


def test_the_estimate_counts_steps_like_sd_scripts_and_prices_the_instance():
    cfg = 'max_train_epochs = 10\n[training]\ntrain_batch_size = 2\nresolution = "1024,1024"\n'
    est = estimate.estimate(cfg, family="sdxl", images_per_epoch=25, instance_type="ml.g5.2xlarge",
                            backend="sagemaker", spot=True)
    assert (est.steps, est.steps_per_epoch) == (130, 13)  # ceil(25 / 2) = 13 per epoch
    g5 = instances.get("ml.g5.2xlarge")
    expected_s = 130 * 2 * 14.4 / (g5.tflops * estimate.UTILISATION) + estimate.STARTUP_S["sagemaker"]
    assert est.seconds == pytest.approx(expected_s)
    assert est.cost_usd == pytest.approx(expected_s / 3600 * 1.52)
    assert est.spot_cost_usd < est.cost_usd
    local = estimate.estimate("max_train_steps = 300", family="sd15", images_per_epoch=60, instance_type="local",
                              backend="local")
    assert (local.steps, local.seconds, local.cost_usd) == (300, None, None) and "no cloud cost" in local.note


def test_a_local_estimate_on_a_machine_without_a_gpu_says_it_trains_on_the_cpu_and_how_slowly(monkeypatch):
    from cloudlora.jobs.local_backend import local_gpu
    from cloudlora.jobs import service

    monkeypatch.setattr(local_gpu, "describe", lambda: "")  # this machine: no nvidia-smi, no Apple silicon
    monkeypatch.setattr(local_gpu, "cpu_cores", lambda: 8)
    sd15 = service.estimate_job(config="max_train_steps = 1000\ntrain_batch_size = 2\n", family="sd15",
                                dataset="", instance_type="local", backend="local", spot=False)
    assert "trains on the CPU (8 cores)" in sd15["summary"] and "depends on" not in sd15["summary"]
    assert 3600 < sd15["seconds"] < 7 * 24 * 3600, "hours, not minutes: 1000 SD 1.5 steps on 8 CPU cores"
    sdxl = service.estimate_job(config="max_train_steps = 1000\n", family="sdxl", dataset="",
                                instance_type="local", backend="local", spot=False)
    assert sdxl["seconds"] > sd15["seconds"] and "SDXL on a CPU also needs" in sdxl["summary"] and "SageMaker" in sdxl["summary"]
    assert sd15["warning"] and sd15["summary"].startswith("Warning: about ")  # over an hour on a CPU: said first
    monkeypatch.setattr(local_gpu, "describe", lambda: "NVIDIA A10G")
    gpu = service.estimate_job(config="max_train_steps = 1000\n", family="sd15", dataset="",
                               instance_type="local", backend="local", spot=False)
    # a GPU of the table: its figure (issue 19.7); one that is not: no time until a job has calibrated it
    assert 60 < gpu["seconds"] < 3600 and "on NVIDIA A10G" in gpu["summary"] and not gpu["warning"]
    monkeypatch.setattr(local_gpu, "describe", lambda: "Acme Tensor 9")
    unknown = service.estimate_job(config="max_train_steps = 1000\n", family="sd15", dataset="",
                                   instance_type="local", backend="local", spot=False)
    assert unknown["seconds"] is None and "depends on the GPU" in unknown["summary"]


def test_the_catalogue_lists_every_instance_the_tab_offers_with_gpu_vram_and_price():
    assert instances.names() == ["local", "ml.g5.xlarge", "ml.g5.2xlarge", "ml.g5.4xlarge", "ml.g5.8xlarge",
                                 "ml.g6.xlarge", "ml.g6e.xlarge", "ml.g4dn.xlarge", "ml.p4d.24xlarge"]
    assert instances.get("ml.g6e.xlarge").describe() == "ml.g6e.xlarge · NVIDIA L40S 48 GB · ~$2.61/h"


def test_a_failure_log_without_a_reason_points_at_the_last_error_line():
    exp = failures.explain("", "loading\nTraceback ...\nValueError: something odd\nbye")
    assert (exp.cause, exp.message) == ("unknown", "ValueError: something odd")


def test_a_trainer_bug_shows_the_errors_last_line_and_says_it_is_a_bug_not_unknown():
    peft = "ValueError: The version of PEFT you are using is not compatible, please use a version >= 0.22.0"
    # What the trainer writes to output/failure on exit 4 (a config word in the error must not mislead).
    exp = failures.explain(f"The trainer failed unexpectedly: {peft}", "step=0/20\nTraceback ...\n" + peft)
    assert exp.cause == "bug"
    assert peft in exp.message and "bug in the trainer" in exp.message and "Report it" in exp.fix
    # A crash before the failure file was written: the runner's "exited with code 4" and the log's error line.
    exp = failures.explain("The trainer exited with code 4.\nTraceback (most recent call last):\n" + peft)
    assert exp.cause == "bug" and peft in exp.message


def test_rewriting_ss_output_name_keeps_the_tensors_intact(tmp_path):
    header = {"__metadata__": {"ss_output_name": "old", "other": "x"},
              "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    raw = json.dumps(header).encode()
    src = tmp_path / "old.safetensors"
    src.write_bytes(struct.pack("<Q", len(raw)) + raw + struct.pack("<2f", 1.5, -2.0))
    dest = tmp_path / "new.safetensors"
    pull.copy_with_metadata(src, dest, {"ss_output_name": "new"})
    data = dest.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0
    out = json.loads(data[8:8 + n])
    assert out["__metadata__"] == {"ss_output_name": "new", "other": "x"} and out["a"] == header["a"]
    assert struct.unpack("<2f", data[8 + n:]) == (1.5, -2.0)


def test_open_tensorboard_serves_the_events_on_loopback_and_stops_with_the_webui(tmp_path, trainer_python):
    import urllib.request

    from cloudlora import background
    from cloudlora.jobs.local_backend import tensorboard_server

    (tmp_path / "events.out.tfevents.1").write_bytes(
        events.frame_record(events.encode_scalar_event("loss/current", 0.5, 1, 1.0)))
    url = tensorboard_server.start("job-1", tmp_path, trainer_python)
    assert url.startswith("http://127.0.0.1:")
    assert tensorboard_server.start("job-1", tmp_path, trainer_python) == url  # one per job, reused
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
    proc = tensorboard_server._servers["job-1"][0]
    background.stop_all()  # what the WebUI calls when it unloads the scripts
    assert proc.wait(10) is not None


def test_every_instance_label_in_the_tab_maps_back_to_its_type():
    from cloudlora.ui import train_form

    assert [train_form.instance_value(i.describe()) for i in instances.CATALOGUE] == instances.names()


def test_create_in_the_tab_shows_a_missing_model_inline_and_keeps_the_form_token():
    from cloudlora.ui import train_form

    msg, token, _selected, _config = train_form.create_job("Local (this machine)", "SD 1.5", None, "demo", "x",
                                                 "max_train_steps = 10\n", True, 48, 24,
                                                 "Cloud LoRA trainer image", "", "token-7")
    assert msg.startswith("✗ No model chosen.") and "**Fix:**" in msg
    assert token == "token-7", "a refused submit keeps the token, so a retry is still one job"


def test_create_takes_the_fields_the_user_typed_but_not_fields_a_pasted_toml_has_not_reached_yet():
    from cloudlora.ui import train_form

    toml = service.default_config("sd15")
    synced = train_form.knob_initial(toml)  # what the fields were last given: max_train_steps 1000
    fields = [synced[k] for k in train_form.KNOBS]
    typed = list(fields)
    typed[train_form.KNOBS.index("max_train_steps")] = "11"  # typed, the field still focused
    out = train_form._with_fields(toml, "sd15", tuple(typed), synced)
    assert "max_train_steps = 11" in out
    pasted = toml.replace("max_train_steps = 1000", "max_train_steps = 2")  # the fields still show 1000
    assert train_form._with_fields(pasted, "sd15", tuple(fields), synced) == pasted


def test_a_tick_queued_before_create_never_paints_the_previous_job_over_the_new_one():
    """Under gradio 4's parallel queue (Forge) the refresh tick queued just before Create, with the old Job ID, can
    end after the new job was painted. Such a tick paints nothing; the page's own job still refreshes each tick."""
    from types import SimpleNamespace

    from cloudlora.ui import train_jobs

    page, other_page = SimpleNamespace(session_hash="page-1"), SimpleNamespace(session_hash="page-2")
    train_jobs.selected_details("old-job", None, {}, page)
    shown = train_jobs.selected_details("new-job", None, {}, page)  # Create answered: the page now shows new-job
    assert "new-job" in str(shown[0]) and shown[-1]["job"] == "new-job"

    late = train_jobs.tick_details("old-job", None, shown[-1], page)  # the tick queued before Create
    assert late[:-1] == [train_jobs.gr.update()] * (len(train_jobs.OUTPUTS) - 1) and late[-1] == shown[-1]
    assert "new-job" in str(train_jobs.tick_details("new-job", None, {}, page)[0])
    # another page keeps its own job; a page never seen before (a restarted server) is painted as it asks
    assert "old-job" in str(train_jobs.tick_details("old-job", None, {}, other_page)[0])
