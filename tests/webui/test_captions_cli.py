"""Story: a folder of photos with no captions becomes a captioned dataset from the CLI.

`cloudlora dataset wrap` lays the photos out, `cloudlora dataset caption NAME --with wd14` downloads the tagger once
from a hub-like server on 127.0.0.1 (HF_ENDPOINT: a tiny ONNX graph with the tagger's real signature, built by the
trainer side's captions/tiny.py) and runs the real trainer-side captioner in the trainer's interpreter, printing
progress per image and the tag frequencies; `cloudlora dataset tags --remove` then reviews them. Nothing downloads
from the internet.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloudlora import bootstrap
from tests.webui.test_assets_datasets import png


@pytest.fixture(scope="module")
def tiny_tagger(trainer_python, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("tiny-wd14")
    code = ("import sys; from cloudlora_backend.trainer.captions.tiny import make_tiny_wd14; "
            "make_tiny_wd14(sys.argv[1])")
    subprocess.run(bootstrap.command(trainer_python, "-c", code, str(out)), check=True)
    return {name: (out / name).read_bytes() for name in ("model.onnx", "selected_tags.csv")}


def cli(*args, env, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "cloudlora", *args], capture_output=True, text=True, env=env,
                          timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_a_folder_of_photos_becomes_a_captioned_dataset_from_the_cli(tmp_path, hub_server, tiny_tagger,
                                                                     trainer_python):
    hub_server.add("SmilingWolf/wd-vit-tagger-v3", {**tiny_tagger, "README.md": b"# tagger"})
    photos = tmp_path / "mychar"
    png(photos / "red.png", color=(230, 10, 10))
    png(photos / "blue.png", color=(10, 10, 230))
    env = {**os.environ, "CLOUDLORA_TRAINER_PYTHON": trainer_python}

    wrapped = cli("dataset", "wrap", str(photos), "--trigger", "mychar", env=env, check=False)
    root = Path(wrapped.stdout.strip().splitlines()[-1].split("The dataset is ", 1)[1].split(" (a copy)")[0])
    assert (root / "10_mychar" / "red.png").is_file() and not list(root.rglob("*.txt"))

    first = cli("dataset", "caption", root.name, "--with", "wd14", "--exclude", "long hair", env=env)
    assert "about" in first.stderr and "to download once" in first.stderr  # the size, before the first download
    assert "[1/2" in first.stderr and "left]" in first.stderr and "[2/2" in first.stderr, first.stderr
    assert "Captioned 2 image(s)" in first.stdout and "2 written" in first.stdout
    red = (root / "10_mychar" / "red.txt").read_text(encoding="utf-8")
    blue = (root / "10_mychar" / "blue.txt").read_text(encoding="utf-8")
    assert red.startswith("mychar, ") and "red theme" in red and "blue theme" not in red
    assert "blue theme" in blue and "long hair" not in blue and "general" not in blue  # excluded; no rating tags
    assert "1girl (2)" in first.stdout and "mychar (2)" in first.stdout  # the frequencies, most frequent first
    downloads = len(hub_server.file_requests())
    assert downloads == 2  # model.onnx and selected_tags.csv; never the README

    again = cli("dataset", "caption", str(root), "--with", "wd14", "--json", env=env)
    summary = json.loads(again.stdout)
    assert summary["written"] == 0 and summary["kept"] == 2  # mode keep: existing captions stay
    assert len(hub_server.file_requests()) == downloads  # cached once: nothing downloaded again
    assert "to download once" not in again.stderr

    tags = cli("dataset", "tags", root.name, "--remove", "1girl", env=env)
    assert "Removed '1girl' from 2 caption(s)." in tags.stdout
    assert "1girl" not in (root / "10_mychar" / "red.txt").read_text(encoding="utf-8")
    assert (root / "10_mychar" / "red.txt").read_text(encoding="utf-8").startswith("mychar, ")


def test_a_bad_threshold_and_an_unknown_folder_are_explained(tmp_path):
    env = dict(os.environ)
    bad = cli("dataset", "caption", str(tmp_path), "--with", "wd14", "--threshold", "1.5", env=env, check=False)
    assert bad.returncode == 1 and "between 0 and 1" in bad.stderr and "fix:" in bad.stderr
    missing = cli("dataset", "tags", "no-such-dataset", env=env, check=False)
    assert missing.returncode == 1 and "no dataset folder" in missing.stderr and "fix:" in missing.stderr


def test_the_tab_and_rest_caption_in_the_background_and_explain_a_failure(tmp_path, hub_server, tiny_tagger,
                                                                          trainer_python, monkeypatch, api_client):
    from fastapi import FastAPI

    from cloudlora import api
    from cloudlora.assets import captioning
    from cloudlora.assets.progress import Progress
    from cloudlora.ui import captions_panel
    from tests.webui.test_assets_api import wait_task

    root = tmp_path / "ds"
    png(root / "10_mychar" / "red.png", color=(230, 10, 10))
    png(root / "10_mychar" / "blue.png", color=(10, 10, 230))
    monkeypatch.setenv("CLOUDLORA_TRAINER_PYTHON", trainer_python)

    missing = list(captions_panel.caption(str(root), "Tags (WD14)", "keep", 0.35, "", "short"))[-1][0]
    assert "cloudlora-error" in missing and "Fix:" in missing and "SmilingWolf/wd-vit-tagger-v3" in missing
    assert "to download once" in captions_panel.size_note("Tags (WD14)")

    hub_server.add("SmilingWolf/wd-vit-tagger-v3", tiny_tagger)
    html, task_id = list(captions_panel.caption(str(root), "Tags (WD14)", "keep", 0.35, "", "short"))[-1]
    assert "Captioned 2 image(s): 2 caption(s) written" in html and "1girl (2)" in html and task_id
    assert "downloaded already" in captions_panel.size_note("Tags (WD14)")
    assert captions_panel.review(str(root))[4][0][1].startswith("mychar, ")  # the review sees the new captions
    assert captioning.progress_text(Progress("captioning", 3, 10, eta=12.0, item="10_x/a.png")) == \
        "captioning 3/10 images · 0:12 left · 10_x/a.png"

    app = FastAPI()
    api.mount(app, None)
    client = api_client(app)
    r = client.post("/cloudlora/v1/datasets/caption", json={"path": str(root), "with": "wd14", "mode": "replace",
                                                            "threshold": 0.8})
    assert r.status_code == 200, r.text
    done = wait_task(client, f"/cloudlora/v1/datasets/tasks/{r.json()['task_id']}", timeout=120)
    assert done["status"] == "done" and done["result"]["written"] == 2, done
    assert done["progress"]["phase"] == "captioning" and done["progress"]["done"] == 2
    assert "long hair" not in (root / "10_mychar" / "red.txt").read_text(encoding="utf-8")  # 0.70 < 0.8
    bad = client.post("/cloudlora/v1/datasets/caption", json={"path": str(root), "with": "blip"})
    assert bad.status_code == 400 and "wd14" in bad.json()["detail"]["fix"]


def test_sentences_from_a_random_weight_florence2_fetched_from_the_hub(tmp_path, hub_server, trainer_python):
    folder = tmp_path / "tiny-florence2"
    code = ("import sys; from cloudlora_backend.trainer.captions.tiny import make_tiny_florence2; "
            "make_tiny_florence2(sys.argv[1])")
    subprocess.run(bootstrap.command(trainer_python, "-c", code, str(folder)), check=True, capture_output=True)
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    hub_server.add("florence-community/Florence-2-base", {**files, "README.md": b"# card", ".gitattributes": b"*"})
    root = tmp_path / "ds"
    png(root / "5_pet" / "a.png")
    (root / "5_pet" / "a.txt").write_text("pet, old caption", encoding="utf-8")
    env = {**os.environ, "CLOUDLORA_TRAINER_PYTHON": trainer_python}
    out = cli("dataset", "caption", str(root), "--with", "florence2", "--mode", "replace", "--json", env=env)
    assert json.loads(out.stdout)["written"] == 1
    caption = (root / "5_pet" / "a.txt").read_text(encoding="utf-8")
    assert caption.startswith("pet") and "old caption" not in caption
    cached = {p.name for p in (Path(os.environ["CLOUDLORA_DATA_DIR"]) / "captioners" / "florence2").iterdir()}
    assert set(files) <= cached and "README.md" not in cached and ".gitattributes" not in cached


def test_cancelling_captioning_stops_the_captioner_and_keeps_the_captions_written_so_far(
        tmp_path, tiny_tagger, trainer_python, isolated_settings):
    import threading

    from cloudlora.assets import captioners
    from cloudlora.assets.captioning import CaptionOptions, caption_dataset
    from cloudlora.assets.transfer import Cancelled

    folder = captioners.model_dir("wd14")
    folder.mkdir(parents=True)
    for name, data in tiny_tagger.items():
        (folder / name).write_bytes(data)
    (folder / captioners.COMPLETE).write_text("{}", encoding="utf-8")
    root = tmp_path / "ds"
    for i in range(120):
        png(root / "10_many" / f"{i:02d}.png", size=(64, 64), color=(i * 4, 10, 10))
    before = threading.active_count()
    whole = tmp_path / "whole"
    png(whole / "10_few" / "a.png", size=(64, 64))
    caption_dataset(whole, CaptionOptions(), python=trainer_python, cancel=threading.Event())  # never cancelled
    assert threading.active_count() == before  # no watcher thread is left waiting after a run

    cancel = threading.Event()
    seen = []

    def on_event(event):
        if event.get("event") == "image":
            seen.append(event)
            if len(seen) == 3:
                cancel.set()

    with pytest.raises(Cancelled):
        caption_dataset(root, CaptionOptions(), python=trainer_python, cancel=cancel, on_event=on_event)
    written = list(root.rglob("*.txt"))
    assert 3 <= len(written) < 120  # what was written stays; the rest was never captioned
    assert all(p.read_text(encoding="utf-8").startswith("many, ") for p in written)
    assert threading.active_count() == before
