"""FLUX.1 from the WebUI side: a transformer-only checkpoint is uploaded with its CLIP-L, T5-XXL and AE, a local job
trains it with the real trainer and the LoRA lands in the Lora folder as Forge reads Flux; Flux is offered only
where its LoRAs can be used, on the instance types with enough memory, priced from its FLOPs."""
from __future__ import annotations

import json

import pytest

from cloudlora import host
from cloudlora.errors import UserError
from cloudlora.jobs.results import estimate
from cloudlora.jobs import flux, service
from cloudlora.jobs.sagemaker_backend import instances, sagemaker
from cloudlora.jobs.spec import JobSpec
from cloudlora_backend.trainer.config import train_config as kohya_config
from cloudlora_backend.trainer.model.family import read_safetensors_header
from cloudlora_backend.trainer.model import flux_keys as K
from tests.trainer.kohya_check import forge_sd_version
from tests.webui.fixtures.jobs import _kill_jobs
from tests.webui.test_jobs_sagemaker import _capture_create, sagemaker_user  # noqa: F401 - fixture

# Small and quick on CPU: 64 px, 32 T5 tokens, two steps, a two-step sample that becomes the preview.
FAST = {"max_train_steps": 2, "resolution": "64,64", "min_bucket_reso": 64, "max_bucket_reso": 128,
        "t5xxl_max_token_length": 32, "network_dim": 4, "network_alpha": 4,
        "sample_prompts": "cldemo, a photo --s 2 --g 3.5", "sample_every_n_steps": 2}


def _parts(files: dict) -> dict:
    return {p: str(files[p]) for p in ("clip_l", "t5xxl", "ae")}


@pytest.fixture
def flux_store(tmp_path, monkeypatch, tiny_flux_parts, sample_dataset, trainer_python):
    from cloudlora import settings
    from cloudlora.assets.datasets import upload_dataset
    from cloudlora.assets.models import upload_model
    from cloudlora.store import open_store

    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("CLOUDLORA_LORA_DIR", str(tmp_path / "Lora"))
    monkeypatch.setenv("CLOUDLORA_TRAINER_PYTHON", trainer_python)
    store = open_store(settings.resolve())
    model = upload_model(store, tiny_flux_parts["transformer"], name="tiny-flux", parts=_parts(tiny_flux_parts))
    upload_dataset(store, sample_dataset, name="demo")
    try:
        yield store, model
    finally:
        _kill_jobs(tmp_path / "store")


def test_a_local_flux_job_puts_a_lora_forge_reads_as_flux_with_sidecar_and_preview_in_the_lora_folder(
        tmp_path, flux_store, tiny_flux_parts):
    store, model = flux_store
    assert model["family"] == "flux" and set(model["parts"]) == {"clip_l", "t5xxl", "ae"}
    text = kohya_config.set_keys(service.default_config("flux"), FAST)
    job = service.create_job(JobSpec(model="tiny-flux", dataset="demo", family="flux", config=text,
                                     lora_name="fx_e2e", backend="local", client_token="fx1"))
    info = service.wait(job["id"], interval=0.5)
    assert info["status"] == "Completed", "\n".join(info["log_tail"][-30:])
    assert info["step"] == info["total_steps"] == 2

    lora_dir = tmp_path / "Lora"
    lora = lora_dir / "fx_e2e.safetensors"
    assert info["pulled"] == [str(lora)]
    sidecar = json.loads((lora_dir / "fx_e2e.json").read_text())
    assert sidecar["sd version"] == "Flux"  # Forge's SdVersion.Flux: the card shows with a Flux model loaded
    assert sidecar["activation text"] == "cldemo"
    assert (lora_dir / "fx_e2e.preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = read_safetensors_header(lora)
    meta = header.pop("__metadata__")
    assert forge_sd_version(meta) == "Flux" and meta["ss_output_name"] == "fx_e2e"
    # Its keys resolve against the BFL layout of the uploaded transformer: all 304 of sd-scripts' Flux modules.
    resolved = K.resolve_lora(K.shapes_of(header), read_safetensors_header(tiny_flux_parts["transformer"]))
    assert resolved.ok and len(resolved.modules) == 304


def test_a_transformer_only_checkpoint_is_uploaded_only_with_the_parts_training_needs(
        tmp_path, monkeypatch, tiny_flux_parts, tiny_sd15):
    from cloudlora.assets.models import upload_model
    from cloudlora.store import LocalStore

    store = LocalStore(tmp_path / "store")
    with pytest.raises(UserError) as err:
        upload_model(store, tiny_flux_parts["transformer"], name="f")
    assert "CLIP-L text encoder, T5-XXL text encoder, autoencoder" in err.value.message
    assert "--clip-l clip_l.safetensors --t5xxl t5xxl_fp16.safetensors --ae ae.safetensors" in err.value.fix
    with pytest.raises(UserError, match="holds no T5-XXL text encoder"):
        upload_model(store, tiny_flux_parts["transformer"], name="f",
                     parts={**_parts(tiny_flux_parts), "t5xxl": str(tiny_flux_parts["clip_l"])})
    with pytest.raises(UserError, match="for FLUX.1 checkpoints only"):
        upload_model(store, tiny_sd15, name="s", parts={"ae": str(tiny_flux_parts["ae"])})
    assert not list(store.list("models/"))  # nothing was sent for a refused upload
    done = upload_model(store, tiny_flux_parts["transformer"], name="f", parts=_parts(tiny_flux_parts))
    assert done["file_count"] == 4 and done["size"] == sum(p.stat().st_size for p in tiny_flux_parts.values())
    for part, info in done["parts"].items():
        assert store.head(info["file"]).size == tiny_flux_parts[part].stat().st_size
    again = upload_model(store, tiny_flux_parts["transformer"], name="f", parts=_parts(tiny_flux_parts))
    assert again["deduplicated"] and again["bytes_sent"] == 0


def test_flux_is_offered_in_forge_and_standalone_and_shown_disabled_with_the_reason_in_a1111(monkeypatch):
    from cloudlora.ui import train_form, train_tab

    for name, offered in (("forge", True), ("standalone", True), ("a1111", False)):
        monkeypatch.setattr(host, "_current", host.Host(name=name))
        assert ("FLUX.1" in train_form.fm_labels()) is offered
        assert flux.offered(name)[0] is offered
    tab = train_tab.build()  # in A1111 (the last host set)
    radio = next(b for b in tab.blocks.values() if getattr(b, "elem_id", None) == "cloudlora_fm_type")
    assert "FLUX.1" not in [c[0] if isinstance(c, (list, tuple)) else c for c in radio.choices]
    shown = next(b for b in tab.blocks.values() if getattr(b, "elem_id", None) == "cloudlora_fm_flux_unavailable")
    assert shown.interactive is False and "A1111 1.10 cannot load FLUX.1" in shown.info and "Forge" in shown.info


def test_a_flux_job_is_refused_in_a1111_with_the_reason(monkeypatch, flux_store):
    monkeypatch.setattr(host, "_current", host.Host(name="a1111"))
    with pytest.raises(UserError) as err:
        service.create_job(JobSpec(model="tiny-flux", dataset="demo", family="flux",
                                   config=service.default_config("flux"), lora_name="x", backend="local"))
    assert "A1111 1.10 cannot load FLUX.1" in err.value.message and "cloudlora ui" in err.value.fix


def test_flux_instance_types_are_those_with_enough_gpu_and_host_memory_each_with_its_price():
    fp8 = dict(flux.instance_choices(fp8_base=True))
    by_value = {v: label for label, v in fp8.items()}
    assert set(by_value) == {"local", "ml.g5.2xlarge", "ml.g5.4xlarge", "ml.g5.8xlarge", "ml.g6e.xlarge",
                             "ml.p4d.24xlarge"}
    assert "~$1.52/h" in by_value["ml.g5.2xlarge"] and "fp8 base only" in by_value["ml.g5.2xlarge"]
    assert "~$2.61/h" in by_value["ml.g6e.xlarge"] and "fp8 or bf16 base" in by_value["ml.g6e.xlarge"]
    # A10G 24 GB cards hold FLUX.1 only as fp8; ml.g5.xlarge / g6.xlarge lack the host memory; T4 lacks bf16.
    assert not flux.fit(instances.get("ml.g5.2xlarge"), False)[0]
    assert "16 GiB host memory" in flux.fit(instances.get("ml.g5.xlarge"), True)[1]
    assert "no bf16" in flux.fit(instances.get("ml.g4dn.xlarge"), True)[1]
    bf16 = {v for _label, v in flux.instance_choices(fp8_base=False)}
    assert bf16 == {"local", "ml.g6e.xlarge", "ml.p4d.24xlarge"}
    need8, need16 = flux.needs(fp8_base=True), flux.needs(fp8_base=False)
    assert 15 < need8.gpu_gb < 22 < 24 and 24 < need16.gpu_gb < 40 and need16.weights_gb == 23.8


def test_a_flux_job_on_an_a10g_without_the_fp8_base_is_refused_naming_the_instances_that_fit(
        sagemaker_user, tiny_flux_parts):  # noqa: F811 - the fixture
    from cloudlora.assets.models import upload_model
    from cloudlora.store import open_store

    upload_model(open_store(sagemaker_user), tiny_flux_parts["transformer"], name="tiny-flux",
                 parts=_parts(tiny_flux_parts))
    text = kohya_config.set_keys(service.default_config("flux"), {"fp8_base": False})
    with pytest.raises(UserError) as err:
        service.create_job(JobSpec(model="tiny-flux", dataset="demo", family="flux", config=text, lora_name="x",
                                   backend="sagemaker", instance_type="ml.g5.2xlarge"), sagemaker_user)
    assert "only with fp8_base = true" in err.value.message
    assert "ml.g6e.xlarge" in err.value.fix and "ml.p4d.24xlarge" in err.value.fix


def test_a_sagemaker_flux_job_streams_the_text_encoders_and_ae_as_their_own_channels(
        sagemaker_user, monkeypatch, tiny_flux_parts):  # noqa: F811 - the fixture
    import boto3

    from cloudlora.assets.models import upload_model
    from cloudlora.store import open_store

    model = upload_model(open_store(sagemaker_user), tiny_flux_parts["transformer"], name="tiny-flux",
                         parts=_parts(tiny_flux_parts))
    sent = _capture_create(monkeypatch)
    job = service.create_job(JobSpec(model="tiny-flux", dataset="demo", family="flux",
                                     config=service.default_config("flux"), lora_name="fx", backend="sagemaker",
                                     instance_type="ml.g6e.xlarge", spot=False), sagemaker_user)
    req = sent[0]
    sagemaker.validate_request(req)
    channels = {c["ChannelName"]: c for c in req["InputDataConfig"]}
    assert set(channels) == {"model", "dataset", "config", "clip_l", "t5xxl", "ae"}
    s3 = boto3.client("s3")
    for part in ("clip_l", "t5xxl", "ae"):
        assert channels[part]["InputMode"] == "FastFile"  # streamed: a 9.5 GB T5-XXL is not copied first
        uri = channels[part]["DataSource"]["S3DataSource"]["S3Uri"]
        assert uri == f"s3://cloudlora-store/{model['parts'][part]['file']}"
        bucket, key = sagemaker.parse_s3_uri(uri)
        assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == tiny_flux_parts[part].stat().st_size
    assert req["HyperParameters"]["family"] == "flux" and job["instance_type"] == "ml.g6e.xlarge"


def test_the_estimate_uses_flux_flops_per_image():
    # The transformer's forward at 1024 px with 512 T5 tokens (flux.py's derivation), and a LoRA step.
    assert round(flux.forward_tflop(1024, 1024), 1) == 74.4
    assert round(flux.step_tflop(1024, 1024)) == 158
    assert flux.step_tflop(512, 512) < flux.step_tflop(1024, 1024) / 3  # fewer image tokens
    cfg = 'resolution = "1024,1024"\nmax_train_steps = 1000\ngradient_checkpointing = true\n'
    args = dict(images_per_epoch=20, instance_type="ml.g6e.xlarge", backend="sagemaker")
    fx = estimate.estimate(cfg, family="flux", **args)
    xl = estimate.estimate(cfg, family="sdxl", **args)
    start = estimate.STARTUP_S["sagemaker"]
    per_image = (fx.seconds - start) / 1000
    expected = 158.4 * estimate.CHECKPOINTING_FACTOR / (362.0 * estimate.UTILISATION)  # L40S: 362 TFLOP/s
    assert abs(per_image - expected) < 0.01
    assert fx.seconds - start > 10 * (xl.seconds - start)  # 158 against SDXL's 14.4 TFLOP per image
    assert fx.cost_usd == pytest.approx(fx.seconds / 3600 * 2.61)


def test_the_cli_uploads_a_flux_checkpoint_with_its_parts_and_prints_flux_defaults(tmp_path, tiny_flux_parts):
    import os
    import subprocess
    import sys

    env = {**os.environ, "CLOUDLORA_STORE": str(tmp_path / "store")}
    cmd = [sys.executable, "-m", "cloudlora", "model", "upload", str(tiny_flux_parts["transformer"]), "--name", "fx",
           "--clip-l", str(tiny_flux_parts["clip_l"]), "--t5xxl", str(tiny_flux_parts["t5xxl"]),
           "--ae", str(tiny_flux_parts["ae"]), "--json"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    manifest = json.loads(run.stdout)
    assert manifest["family"] == "flux" and sorted(manifest["parts"]) == ["ae", "clip_l", "t5xxl"]
    refused = subprocess.run(cmd[:6], capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode == 1 and "--clip-l clip_l.safetensors" in refused.stdout + refused.stderr
    defaults = subprocess.run([sys.executable, "-m", "cloudlora", "config", "defaults", "--family", "flux"],
                              capture_output=True, text=True, env=env, timeout=300)
    assert defaults.returncode == 0 and "fp8_base = true" in defaults.stdout
    assert 'timestep_sampling = "shift"' in defaults.stdout and "guidance_scale = 1.0" in defaults.stdout


def test_choosing_flux_in_the_tab_prefills_its_config_and_lists_only_the_instances_that_fit(monkeypatch):
    from cloudlora.ui import train_form

    monkeypatch.setattr(host, "_current", host.Host(name="forge"))
    g4dn = instances.get("ml.g4dn.xlarge").describe()
    out = train_form.on_family("FLUX.1", service.default_config("sd15"), g4dn)
    label, config_update, inst = out[0], out[1], out[-1]
    assert label["value"] == "FLUX.1" and config_update["value"] == service.default_config("flux")
    values = [train_form.instance_value(lb) for lb in inst["choices"]]
    assert "ml.g4dn.xlarge" not in values and "ml.g6e.xlarge" in values
    assert train_form.instance_value(inst["value"]) == "local"  # the T4 pick was replaced by a type that fits
    back = train_form.on_family("SDXL", service.default_config("flux"), inst["value"])[-1]
    assert "ml.g4dn.xlarge" in [train_form.instance_value(lb) for lb in back["choices"]]
