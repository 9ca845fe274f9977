"""`cloudlora train` with local paths checks everything (model, dataset, config) before it uploads anything."""
from __future__ import annotations

from PIL import Image

from cloudlora import settings
from cloudlora.cli import main
from cloudlora.store import open_store


def _store_keys(prefix):
    return [o.key for o in open_store(settings.resolve()).list(prefix)]


def test_a_bad_dataset_is_refused_before_the_model_is_uploaded(tmp_path, monkeypatch, tiny_sd15, capsys):
    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    bad = tmp_path / "photos" / "cldemo"  # no <repeats>_ prefix: training would read nothing
    bad.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (64, 64), (i * 60, 0, 0)).save(bad / f"{i}.png")
    assert main(["train", "--model", str(tiny_sd15), "--dataset", str(bad.parent), "--backend", "local"]) == 1
    err = capsys.readouterr().err
    assert "cldemo" in err and "nothing was uploaded" in err
    assert _store_keys("models/") == []


def test_an_unknown_model_is_refused_before_the_dataset_is_uploaded(tmp_path, monkeypatch, sample_dataset, capsys):
    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    assert main(["train", "--model", "no-such-model", "--dataset", str(sample_dataset), "--backend", "local"]) == 1
    err = capsys.readouterr().err
    assert "no-such-model" in err and "cloudlora model list" in err
    assert _store_keys("datasets/") == []


def test_a_bad_config_is_refused_before_anything_is_uploaded(tmp_path, monkeypatch, tiny_sd15, sample_dataset,
                                                             capsys):
    monkeypatch.setenv("CLOUDLORA_STORE", str(tmp_path / "store"))
    code = main(["train", "--model", str(tiny_sd15), "--dataset", str(sample_dataset), "--backend", "local",
                 "--set", "resolution=512", "--set", "min_bucket_reso=640"])
    assert code == 1
    assert "min_bucket_reso = 640" in capsys.readouterr().err
    assert _store_keys("models/") == [] and _store_keys("datasets/") == []
