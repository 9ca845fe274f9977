"""Names and paths that Windows reads as something else are refused before they reach the disk (WINDOWS.md rows 21,
25 and 27): store keys, model, dataset and LoRA names, and folder containment compared as paths."""
from __future__ import annotations

import ntpath

import pytest

from cloudlora.errors import UserError


@pytest.mark.parametrize("key", ["models/a\\..\\..\\x", "models/a:b/x.safetensors", "models/CON/x.safetensors",
                                 "datasets/d/10_a/nul.png", "models/x./y", "models/x /y", "jobs/j/com1"])
def test_store_keys_that_are_path_syntax_on_windows_are_refused(key):
    from cloudlora.store.base import InvalidKey, check_key

    with pytest.raises(InvalidKey):
        check_key(key)
    assert check_key("datasets/d/10_a/console.png") == "datasets/d/10_a/console.png"


def test_the_local_store_refuses_them_too(tmp_path):
    from cloudlora.store import LocalStore
    from cloudlora.store.base import InvalidKey

    store = LocalStore(tmp_path / "store")
    with pytest.raises(InvalidKey):
        store.put_bytes("models/a\\..\\..\\escaped", b"x")
    assert not (tmp_path / "escaped").exists()


@pytest.mark.parametrize("name", ["CON", "nul", "Aux", "com1", "LPT9", "con.v1", "model.", "model.v1."])
def test_model_and_dataset_names_windows_cannot_hold_are_refused(name):
    from cloudlora.assets.models import check_name, safe_name

    with pytest.raises(UserError):
        check_name(name)
    check_name(safe_name(name))  # what the upload derives from a file name is always valid


@pytest.mark.parametrize("name", ["CON", "nul", "com1", "NUL .v1", "aux.v2", "mylora.", "mylora "])
def test_lora_names_windows_cannot_hold_are_refused(name):
    from cloudlora.jobs.spec import LORA_NAME_RE

    assert not LORA_NAME_RE.fullmatch(name)
    for fine in ("console", "com10", "my lora v1.5", "nullify"):
        assert LORA_NAME_RE.fullmatch(fine), fine


def test_containment_is_compared_as_paths_after_normcase():
    from cloudlora.assets.dataset_check import contains

    assert contains(r"C:\Data\set", r"c:\data\SET\10_a\1.png", ntpath)  # a drive letter's or a folder's case
    assert not contains(r"C:\Data\set", r"C:\Data\set2\1.png", ntpath)  # a prefix is no containment
    assert not contains(r"C:\Data", r"D:\Data\1.png", ntpath)
    assert contains("/data/set", "/data/set/10_a/1.png") and not contains("/data/set", "/data/set2/1.png")
