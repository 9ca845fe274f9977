"""`model fetch`: a base model from a hub-like server (HF_ENDPOINT) or a plain URL on 127.0.0.1 into the checkpoint
folder and the store: resumable (a killed download sends only the missing bytes), checked against the hub's sha256,
gated repos explained and their token kept outside the settings, failures in words."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi import FastAPI

from cloudlora import api, host, settings
from cloudlora.assets import hub_token, model_fetch, models, resumable_download
from cloudlora.cli import main as cli
from cloudlora.errors import UserError
from cloudlora.store import open_store
from tests.webui.fixtures.hub_server import GOOD_TOKEN
from tests.webui.test_assets_family import SD15, SDXL, write_safetensors

ROOT = Path(__file__).resolve().parents[2]


def checkpoint_bytes(tmp_path: Path, shapes=SD15, pad_mib: int = 0, name="ckpt.safetensors") -> bytes:
    shapes = {k: (8, 4) for k in shapes}
    if pad_mib:
        shapes["model.diffusion_model.padding"] = (pad_mib, 1 << 19)
    data = write_safetensors(tmp_path / name, shapes).read_bytes()
    # not all zeros: a resumed download that stitched the wrong bytes would hash differently
    return data[:-1024] + os.urandom(1024) if pad_mib else data


def store(tmp_path):
    os.environ["CLOUDLORA_STORE"] = str(tmp_path / "store")
    return open_store(settings.resolve())



def _kill_half_way(cmd: list[str], dest: Path) -> int:
    """Runs a fetch and kills it (SIGKILL) once its .part in `dest` holds over 2 MiB; the bytes it had."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline, parts = time.monotonic() + 30, []
    while time.monotonic() < deadline:
        parts = list(dest.glob(".cloudlora-fetch-*.part"))
        if parts and parts[0].stat().st_size > 2 << 20:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    return parts[0].stat().st_size

def test_sources_parse_into_hub_files_repos_and_urls(hub_server):
    assert model_fetch.parse_source("org/repo", "a.safetensors") == model_fetch.Source("hub", "org/repo",
                                                                                        "a.safetensors")
    assert model_fetch.parse_source("org/repo/sub/a.safetensors").file == "sub/a.safetensors"
    sd15 = model_fetch.parse_source("sd15")
    assert (sd15.repo, sd15.file) == ("stable-diffusion-v1-5/stable-diffusion-v1-5", "v1-5-pruned-emaonly.safetensors")
    hub_link = model_fetch.parse_source(f"{hub_server.url}/org/repo/blob/v2/x.safetensors")
    assert hub_link == model_fetch.Source("hub", "org/repo", "x.safetensors", "v2")
    civitai = model_fetch.parse_source("https://civitai.com/api/download/models/12345")
    assert civitai.kind == "url"
    with pytest.raises(UserError, match="plain http"):
        model_fetch.parse_source("http://example.com/x.safetensors")
    with pytest.raises(UserError, match="neither a Hugging Face repo id"):
        model_fetch.parse_source("not a model")


def test_a_hub_file_lands_in_the_checkpoint_folder_checked_and_uploaded(hub_server, tmp_path, monkeypatch):
    data = checkpoint_bytes(tmp_path, SDXL)
    hub_server.add("org/base", {"base-v1.safetensors": data, "README.md": b"# hi", "ae.safetensors": b"x" * 10})
    ckpt_dir = tmp_path / "models" / "Stable-diffusion"
    monkeypatch.setattr(host, "_current", host.Host(name="a1111", checkpoint_dir=lambda: ckpt_dir))
    result = model_fetch.fetch_model(store(tmp_path), "org/base")  # the repo's only base checkpoint is picked
    assert Path(result["path"]) == ckpt_dir / "base-v1.safetensors"
    assert (ckpt_dir / "base-v1.safetensors").read_bytes() == data
    assert result["sha256_checked"] and result["family"] == "sdxl" and result["name"] == "base-v1"
    assert result["sha256"] == hashlib.sha256(data).hexdigest() and not result["deduplicated"]
    assert [m["name"] for m in models.list_models(store(tmp_path))] == ["base-v1"]
    assert not list(ckpt_dir.glob(".cloudlora-fetch-*"))  # no partial left behind
    # again: nothing is downloaded, and the store already has it
    again = model_fetch.fetch_model(store(tmp_path), "org/base", file="base-v1.safetensors")
    assert again["already_downloaded"] and again["downloaded_bytes"] == 0 and again["deduplicated"]
    assert len(hub_server.file_requests()) == 1


def test_standalone_it_lands_in_the_data_folder(hub_server, tmp_path):
    hub_server.add("org/base", {"m.safetensors": checkpoint_bytes(tmp_path)})
    result = model_fetch.fetch_model(None, "org/base", file="m.safetensors", upload=False)
    assert Path(result["path"]) == settings.data_dir() / "models" / "Stable-diffusion" / "m.safetensors"


def test_a_killed_download_resumes_with_only_the_missing_bytes(hub_server, tmp_path):
    data = checkpoint_bytes(tmp_path, SD15, pad_mib=8)
    hub_server.add("org/big", {"big.safetensors": data})
    hub_server.delay = 0.02  # ~3 MiB/s: the kill comes half-way
    dest = tmp_path / "ckpts"
    cmd = [sys.executable, "-m", "cloudlora", "model", "fetch", "org/big", "--file", "big.safetensors",
           "--dest", str(dest), "--no-upload", "--json"]
    have = _kill_half_way(cmd, dest)
    assert 0 < have < len(data)
    hub_server.delay = 0
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["resumed_from"] == have and out["downloaded_bytes"] == len(data) - have and out["sha256_checked"]
    last = hub_server.file_requests()[-1]
    assert last["range"] == f"bytes={have}-" and last["status"] == 206 and last["sent"] == len(data) - have
    assert (dest / "big.safetensors").read_bytes() == data


def test_bytes_that_do_not_match_the_hubs_sha256_are_refused_and_removed(hub_server, tmp_path):
    data = checkpoint_bytes(tmp_path)
    hub_server.add("org/bad", {"m.safetensors": data})
    hub_server.repos["org/bad"]["m.safetensors"] = data  # the API lists this hash...
    sha = hashlib.sha256(data).hexdigest()
    hub_server.blobs[sha] = data[:-4] + b"evil"  # ...the CDN sends other bytes
    with pytest.raises(UserError, match="do not match the hub's sha256"):
        model_fetch.fetch_model(None, "org/bad", file="m.safetensors", dest_dir=tmp_path / "d", upload=False)
    assert not list((tmp_path / "d").iterdir())


def test_a_gated_repo_says_how_to_get_access_and_the_token_stays_out_of_the_settings(hub_server, tmp_path):
    data = checkpoint_bytes(tmp_path)
    hub_server.add("bfl/gated", {"m.safetensors": data}, gated=True)
    with pytest.raises(UserError) as no_token:
        model_fetch.fetch_model(None, "bfl/gated", file="m.safetensors", dest_dir=tmp_path / "d", upload=False)
    assert "401" in no_token.value.message and "needs a Hugging Face token" in no_token.value.message
    assert "accept its licence" in no_token.value.fix and f"{hub_server.url}/bfl/gated" in no_token.value.fix
    with pytest.raises(UserError) as refused:
        model_fetch.fetch_model(None, "bfl/gated", file="m.safetensors", token="wrong", dest_dir=tmp_path / "d",
                                upload=False)
    assert "refused your token (403" in refused.value.message and "accept the model's licence" in refused.value.fix

    # the CLI with the token on stdin: fetched, and the token kept in the hub's token file, not the settings
    proc = subprocess.run([sys.executable, "-m", "cloudlora", "model", "fetch", "bfl/gated", "--file", "m.safetensors",
                           "--dest", str(tmp_path / "d"), "--no-upload", "--token-stdin"],
                          input=GOOD_TOKEN + "\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert Path(os.environ["HF_TOKEN_PATH"]).read_text() == GOOD_TOKEN
    assert "Token kept in the Hugging Face token file" in proc.stdout
    assert not settings.settings_file().exists() or GOOD_TOKEN not in settings.settings_file().read_text()
    assert hub_token.find() == GOOD_TOKEN
    # the token went to the hub, never to the CDN host the hub redirected to
    gets = hub_server.log
    assert any(e["path"].startswith("/bfl/gated/resolve/") and e["auth"] == f"Bearer {GOOD_TOKEN}" for e in gets)
    assert all(e["auth"] is None for e in hub_server.file_requests())
    # a later fetch finds the kept token by itself
    (tmp_path / "d" / "m.safetensors").unlink()
    assert model_fetch.fetch_model(None, "bfl/gated", file="m.safetensors", dest_dir=tmp_path / "d",
                                   upload=False)["sha256_checked"]


def test_failures_are_explained_with_the_fix(hub_server, tmp_path, capsys):
    hub_server.add("org/base", {"a.safetensors": checkpoint_bytes(tmp_path), "b.safetensors": b"0" * 100,
                                "notes.txt": b"hi"})
    with pytest.raises(UserError, match="not found on the hub") as missing:
        model_fetch.fetch_model(None, "org/nope", upload=False)
    assert "Check the repo id 'org/nope'" in missing.value.fix
    with pytest.raises(UserError, match="holds several checkpoints") as several:
        model_fetch.fetch_model(None, "org/base", upload=False)
    assert "--file" in several.value.fix
    with pytest.raises(UserError, match="has no file 'c.safetensors'"):
        model_fetch.fetch_model(None, "org/base", file="c.safetensors", upload=False)
    # downloaded, but not a base model: said, with where it is
    with pytest.raises(UserError, match="not a base model this extension trains on") as not_base:
        model_fetch.fetch_model(None, "org/base", file="notes.txt", dest_dir=tmp_path / "d", upload=False)
    assert str(tmp_path / "d" / "notes.txt") in not_base.value.fix
    # the CLI: exit 1 and the fix, no traceback
    assert cli(["model", "fetch", "org/nope", "--no-upload"]) == 1
    err = capsys.readouterr().err
    assert "not found on the hub (404)" in err and "Traceback" not in err


def test_a_full_disk_is_said_before_downloading(hub_server, tmp_path, monkeypatch):
    hub_server.add("org/base", {"a.safetensors": checkpoint_bytes(tmp_path)})
    monkeypatch.setattr(resumable_download, "free_space", lambda folder: 1000)
    with pytest.raises(UserError, match="not enough disk space") as full:
        model_fetch.fetch_model(None, "org/base", dest_dir=tmp_path / "d", upload=False)
    assert "Free some space" in full.value.fix
    assert not [e for e in hub_server.file_requests() if e["sent"]]


def test_a_plain_url_resumes_with_range_and_takes_the_servers_file_name(hub_server, tmp_path):
    data = checkpoint_bytes(tmp_path, SD15, pad_mib=2)
    url = hub_server.add_file("12345", data, disposition='attachment; filename="myModel_v10.safetensors"')
    dest = tmp_path / "d"
    dest.mkdir()
    # a partial from an earlier, interrupted run of the same URL
    ident = hashlib.sha256(url.encode()).hexdigest()[:16]
    (dest / f".cloudlora-fetch-{ident}.part").write_bytes(data[:1_000_000])
    (dest / f".cloudlora-fetch-{ident}.json").write_text(json.dumps({"url": url, "name": "", "size": len(data),
                                                                    "sha256": ""}))
    result = model_fetch.fetch_model(store(tmp_path), url, dest_dir=dest)
    assert Path(result["path"]).name == "myModel_v10.safetensors" and result["resumed_from"] == 1_000_000
    assert hub_server.file_requests()[-1]["range"] == "bytes=1000000-"
    assert (dest / "myModel_v10.safetensors").read_bytes() == data
    assert result["name"] == "myModel_v10" and result["family"] == "sd15"
    # a web page instead of a file (a login page) is said so; a missing one is a 404 in words
    page = hub_server.add_file("page", b"<html>log in</html>", content_type="text/html; charset=utf-8")
    with pytest.raises(UserError, match="answered with a web page") as html:
        model_fetch.fetch_model(None, page, dest_dir=tmp_path / "e", upload=False)
    assert "direct download link" in html.value.fix
    with pytest.raises(UserError, match=r"not found \(404\)"):
        model_fetch.fetch_model(None, url.replace("12345", "missing"), dest_dir=tmp_path / "e", upload=False)


def test_the_known_bases_list_family_size_and_licence(capsys):
    assert cli(["model", "bases", "--json"]) == 0
    bases = {b["key"]: b for b in json.loads(capsys.readouterr().out)["bases"]}
    assert {"sd15", "sdxl", "animagine-xl", "flux1-dev", "flux1-schnell"} <= set(bases)
    assert bases["flux1-dev"]["gated"] and bases["sdxl"]["family"] == "sdxl" and bases["sd15"]["licence"]
    assert cli(["model", "bases"]) == 0 and "FLUX.1-schnell" in capsys.readouterr().out


def test_rest_fetch_runs_in_the_background_and_lists_the_bases(hub_server, api_client, tmp_path, monkeypatch):
    from tests.webui.test_assets_api import wait_task

    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    hub_server.add("org/base", {"m.safetensors": checkpoint_bytes(tmp_path)})
    app = FastAPI()
    api.mount(app, None)
    client = api_client(app)
    assert "sd15" in [b["key"] for b in client.get("/cloudlora/v1/models/fetch/bases").json()["bases"]]
    r = client.post("/cloudlora/v1/models/fetch", json={"source": "org/base", "file": "m.safetensors"})
    assert r.status_code == 200, r.text
    done = wait_task(client, f"/cloudlora/v1/models/tasks/{r.json()['task_id']}")
    assert done["status"] == "done" and done["result"]["family"] == "sd15" and done["result"]["sha256_checked"]
    assert [m["name"] for m in client.get("/cloudlora/v1/models").json()["models"]] == ["m"]
    bad = client.post("/cloudlora/v1/models/fetch", json={"source": "not a model"})
    assert bad.status_code == 400 and "neither a Hugging Face repo id" in bad.json()["detail"]["message"]


def test_a_flux_base_brings_its_autoencoder_and_text_encoders_and_uploads_them_as_parts(
        hub_server, tiny_flux_parts, tmp_path, monkeypatch):
    from cloudlora.assets import known_bases

    files = {p: Path(v).read_bytes() for p, v in tiny_flux_parts.items()}
    hub_server.add("bfl/flux-tiny", {"flux1-tiny.safetensors": files["transformer"], "ae.safetensors": files["ae"]},
                   gated=True)
    hub_server.add("te/encoders", {"clip_l.safetensors": files["clip_l"], "t5xxl_fp16.safetensors": files["t5xxl"]})
    tiny = known_bases.KnownBase(
        "flux-tiny", "FLUX.1 tiny", "flux", "bfl/flux-tiny", "flux1-tiny.safetensors", 1, "test", "", gated=True,
        parts={"ae": known_bases.HubFile("bfl/flux-tiny", "ae.safetensors"),
               "clip_l": known_bases.HubFile("te/encoders", "clip_l.safetensors"),
               "t5xxl": known_bases.HubFile("te/encoders", "t5xxl_fp16.safetensors")})
    monkeypatch.setattr(known_bases, "BASES", (*known_bases.BASES, tiny))
    models_root = tmp_path / "webui" / "models"
    monkeypatch.setattr(host, "_current",
                        host.Host(name="forge", checkpoint_dir=lambda: models_root / "Stable-diffusion"))
    result = model_fetch.fetch_model(store(tmp_path), "flux-tiny", token=GOOD_TOKEN)
    assert result["family"] == "flux" and result["name"] == "flux-tiny"
    assert result["parts"] == {"ae": str(models_root / "VAE" / "ae.safetensors"),
                               "clip_l": str(models_root / "text_encoder" / "clip_l.safetensors"),
                               "t5xxl": str(models_root / "text_encoder" / "t5xxl_fp16.safetensors")}
    manifest = models.get_model(store(tmp_path), "flux-tiny")
    assert set(manifest["parts"]) == {"ae", "clip_l", "t5xxl"} and manifest["file_count"] == 4
    assert not list((models_root / "Stable-diffusion").glob("ae*"))  # never listed as a checkpoint


def test_a_url_token_never_lands_in_a_file_a_task_or_a_message(hub_server, api_client, tmp_path, monkeypatch):
    """Civitai's ?token=KEY: in memory for the request only. A killed fetch resumes from the same URL as typed; no
    file under the data folder or the store, no task name or message (CLI, tab, REST) holds the token."""
    from cloudlora.assets import tasks
    from cloudlora.ui import checkpoints_panel
    from tests.webui.test_assets_api import wait_task

    secret = "SECRETcivitai1234"
    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    data = checkpoint_bytes(tmp_path, SD15, pad_mib=8)
    url = hub_server.add_file("777", data, disposition='attachment; filename="civ_v1.safetensors"') + \
        f"?token={secret}&type=Model"
    dest = settings.data_dir() / "models" / "Stable-diffusion"
    hub_server.delay = 0.02  # the kill comes half-way
    cmd = [sys.executable, "-m", "cloudlora", "model", "fetch", url, "--json"]
    have = _kill_half_way(cmd, dest)
    hub_server.delay = 0

    def leaks() -> list[str]:
        roots = [settings.data_dir(), tmp_path / "store"]
        return [str(p) for r in roots if r.exists() for p in r.rglob("*")
                if p.is_file() and secret.encode() in p.read_bytes()]

    assert 0 < have < len(data) and leaks() == []
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["resumed_from"] == have and out["downloaded_bytes"] == len(data) - have
    assert (dest / "civ_v1.safetensors").read_bytes() == data and secret not in done.stdout + done.stderr
    assert leaks() == []
    assert all(secret not in e["path"] for e in hub_server.file_requests())

    app = FastAPI()
    api.mount(app, None)
    client = api_client(app)
    r = client.post("/cloudlora/v1/models/fetch", json={"source": url})
    finished = wait_task(client, f"/cloudlora/v1/models/tasks/{r.json()['task_id']}")
    assert finished["status"] == "done" and secret not in json.dumps(finished)
    shown = list(checkpoints_panel.fetch(url, "", "", ""))
    assert "civ_v1" in shown[-1][0] and secret not in json.dumps(shown)
    missing = url.replace("/777?", "/missing?")
    failed = list(checkpoints_panel.fetch(missing, "", "", ""))
    assert "404" in failed[-1][0] and secret not in json.dumps(failed)
    with pytest.raises(UserError) as err:
        model_fetch.fetch_model(None, missing, upload=False)
    assert secret not in err.value.message + (err.value.fix or "")
    names = [t.name for t in tasks.all_transfers()]
    assert any("token=***" in n for n in names) and not any(secret in n for n in names)
    assert leaks() == []
