"""Reviewing captions before training (assets/captions.py, the REST routes): the list, one caption edited in place
(atomically), the tag frequencies, one tag removed from every caption, the trigger check; nothing outside the dataset
folder is read or written."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi import FastAPI

from cloudlora import api
from cloudlora.assets import captions
from cloudlora.errors import UserError
from tests.webui.test_assets_datasets import png


def tagged_dataset(root: Path) -> Path:
    sub = root / "10_demo"
    png(sub / "a.png")
    png(sub / "b.png", color=(1, 2, 3))
    png(sub / "c.png", color=(9, 9, 9))
    png(sub / "d.png", color=(50, 9, 9))
    (sub / "a.txt").write_text("demo, 1girl, smile, watermark\n", encoding="utf-8")
    (sub / "b.txt").write_text("1girl,  watermark ,outdoors", encoding="utf-8")  # no trigger, odd spacing
    (sub / "c.caption").write_bytes("\ufeffdemo, smile".encode("utf-8"))  # a BOM, a .caption file
    return root  # d.png has no caption


def test_the_review_lists_captions_frequencies_and_the_trigger_check(tmp_path):
    root = tagged_dataset(tmp_path / "ds")
    r = captions.review(root)
    assert [i["rel"] for i in r["items"]] == ["10_demo/a.png", "10_demo/b.png", "10_demo/c.png", "10_demo/d.png"]
    assert r["items"][2]["caption"] == "demo, smile" and r["items"][3]["caption_file"] is None
    assert r["tags"][:3] == [["1girl", 2], ["demo", 2], ["smile", 2]] and ["outdoors", 1] in r["tags"]
    assert r["trigger"]["missing"] == [{"rel": "10_demo/b.png", "trigger": "demo"}]
    assert r["trigger"]["uncaptioned"] == ["10_demo/d.png"]
    assert captions.has_trigger("a photo of Demo standing", "demo") and not captions.has_trigger("demolition", "demo")


def test_removing_a_tag_everywhere_keeps_everything_else(tmp_path):
    root = tagged_dataset(tmp_path / "ds")
    os.chmod(root / "10_demo" / "a.txt", 0o644)
    out = captions.remove_tag(root, " watermark ")
    assert out == {"tag": "watermark", "changed": ["10_demo/a.png", "10_demo/b.png"]}
    assert (root / "10_demo" / "a.txt").read_text(encoding="utf-8") == "demo, 1girl, smile\n"
    assert (root / "10_demo" / "b.txt").read_text(encoding="utf-8") == "1girl,outdoors\n"
    assert (root / "10_demo" / "c.caption").read_bytes() == "\ufeffdemo, smile".encode("utf-8")  # untouched
    assert (root / "10_demo" / "a.txt").stat().st_mode & 0o777 == 0o644  # the user's file keeps its mode
    assert not [p for p in (root / "10_demo").iterdir() if p.name.endswith(".tmp")]
    assert "watermark" not in dict(map(tuple, captions.review(root)["tags"]))
    with pytest.raises(UserError):
        captions.remove_tag(root, "  ")


def test_editing_one_caption_writes_beside_its_image(tmp_path):
    root = tagged_dataset(tmp_path / "ds")
    item = captions.edit_caption(root, "10_demo/d.png", "demo,   a  red square")
    assert item["caption"] == "demo, a red square"
    assert (root / "10_demo" / "d.txt").read_text(encoding="utf-8") == "demo, a red square\n"
    captions.edit_caption(root, str(root / "10_demo" / "c.png"), "demo, frown")  # an absolute path too
    assert (root / "10_demo" / "c.caption").read_text(encoding="utf-8") == "demo, frown\n"
    assert not (root / "10_demo" / "c.txt").exists()
    assert captions.review(root)["trigger"]["uncaptioned"] == []


def test_nothing_outside_the_dataset_is_read_or_written(tmp_path):
    root = tagged_dataset(tmp_path / "ds")
    outside = tmp_path / "secret.txt"
    outside.write_text("demo, watermark, secret", encoding="utf-8")
    png(tmp_path / "elsewhere.png")
    os.symlink(tmp_path / "elsewhere.png", root / "10_demo" / "e.png")  # an image that leaves the folder
    png(root / "10_demo" / "f.png")
    os.symlink(outside, root / "10_demo" / "f.txt")  # a caption that leaves the folder
    r = captions.review(root)
    assert "10_demo/e.png" not in [i["rel"] for i in r["items"]]
    assert [i for i in r["items"] if i["rel"] == "10_demo/f.png"][0]["caption"] == ""
    assert "secret" not in dict(map(tuple, r["tags"]))
    captions.remove_tag(root, "watermark")
    assert outside.read_text(encoding="utf-8") == "demo, watermark, secret"
    for image in ("10_demo/e.png", "../elsewhere.png", str(tmp_path / "elsewhere.png"), "10_demo/../../x.png"):
        with pytest.raises(UserError):
            captions.edit_caption(root, image, "owned")
    assert outside.read_text(encoding="utf-8") == "demo, watermark, secret"
    with pytest.raises(UserError):
        captions.edit_caption(root, "10_demo/f.png", "owned")  # its caption file is a link out: refused
    assert outside.read_text(encoding="utf-8") == "demo, watermark, secret"
    assert not (tmp_path / "elsewhere.txt").exists()


def test_the_rest_routes_review_edit_and_remove_behind_auth(api_client, tmp_path):
    root = tagged_dataset(tmp_path / "ds")
    app = FastAPI()
    api.mount(app, "alice:s3cret")
    anon = api_client(app)
    assert anon.post("/cloudlora/v1/datasets/captions", json={"path": str(root)}).status_code == 401
    client = api_client(app, auth=("alice", "s3cret"))
    assert client.post("/cloudlora/v1/datasets/captions", json={"path": str(root)},
                       headers={"Origin": "https://evil.example"}).status_code == 403
    r = client.post("/cloudlora/v1/datasets/captions", json={"path": str(root)})
    assert r.status_code == 200 and r.json()["trigger"]["missing"][0]["rel"] == "10_demo/b.png"
    r = client.post("/cloudlora/v1/datasets/captions/edit",
                    json={"path": str(root), "image": "10_demo/b.png", "caption": "demo, 1girl"})
    assert r.status_code == 200 and (root / "10_demo" / "b.txt").read_text(encoding="utf-8") == "demo, 1girl\n"
    r = client.post("/cloudlora/v1/datasets/captions/remove-tag", json={"path": str(root), "tag": "1girl"})
    assert r.json()["changed"] == ["10_demo/a.png", "10_demo/b.png"]
    bad = client.post("/cloudlora/v1/datasets/captions/edit",
                      json={"path": str(root), "image": "../../etc/passwd", "caption": "x"})
    assert bad.status_code == 400 and bad.json()["detail"]["fix"]
    names = [c["name"] for c in client.get("/cloudlora/v1/captioners").json()]
    assert names == ["wd14", "florence2"]


def test_the_panel_reviews_removes_and_saves_edits_from_the_table(tmp_path):
    from cloudlora.ui import captions_panel

    root = tagged_dataset(tmp_path / "ds")
    tags, picker, trigger, table, listed = captions_panel.review(str(root))
    assert tags["value"]["data"][0] == ["1girl", 2] and "watermark" in picker["choices"]
    assert "1 caption(s) without their trigger word" in trigger and "10_demo/b.png" in trigger
    assert listed[1] == ["10_demo/b.png", "1girl,  watermark ,outdoors"]
    assert "Removed 'watermark' from 2 caption(s)" in captions_panel.remove_tag(str(root), "watermark")
    edited = [list(r) for r in captions_panel.review(str(root))[4]]
    edited[1][1] = "demo, 1girl, outdoors"
    out = captions_panel.save_table(str(root), captions_panel.review(str(root))[4], edited)
    assert out == "✓ Saved 1 caption(s)." and "without their trigger" not in captions_panel.review(str(root))[2]
    assert captions_panel.save_table(str(root), edited, edited) == "No caption changed."
    forged = [["../../secret.png", "x"]]  # a row the server never listed is not written
    assert captions_panel.save_table(str(root), forged, [["../../secret.png", "y"]]).startswith("✗")


def test_only_the_chosen_captioners_settings_show():
    from cloudlora.ui import captions_panel

    threshold, exclude, detail = captions_panel.captioner_fields("Sentences (Florence-2)")
    assert (threshold["visible"], exclude["visible"], detail["visible"]) == (False, False, True)
    assert [u["visible"] for u in captions_panel.captioner_fields("Tags (WD14)")] == [True, True, False]
