"""In Chromium against `cloudlora ui`: review a dataset's captions before training. Validate, see the trigger warning,
remove a tag from every caption with one click, edit a caption in place and see the warning go. Screenshots go to
artifacts/."""
from __future__ import annotations

from playwright.sync_api import expect

from tests.webui.test_assets_datasets import png
from tests.webui.test_captions_cli import tiny_tagger  # noqa: F401  (the tiny ONNX tagger, built once)


def test_review_captions_remove_a_tag_everywhere_edit_one_and_see_the_trigger_warning(
        ui_server, browser_page, screenshot, tmp_path):
    root = tmp_path / "mychar"
    sub = root / "10_mychar"
    for i, color in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        png(sub / f"{i}.png", color=color)
    (sub / "0.txt").write_text("mychar, 1girl, watermark", encoding="utf-8")
    (sub / "1.txt").write_text("mychar, 1girl, smile, watermark", encoding="utf-8")
    (sub / "2.txt").write_text("1girl, watermark", encoding="utf-8")  # lacks the trigger word
    base = ui_server(env={"CLOUDLORA_STORE": str(tmp_path / "store")})
    page = browser_page
    page.goto(base)
    page.locator(".tab-nav button", has_text="Cloud Asset Management").first.click()
    page.locator("#cloudlora_datasets").first.wait_for()

    page.locator("#cloudlora_ds_folder textarea, #cloudlora_ds_folder input").first.fill(str(root))
    page.locator("#cloudlora_ds_validate").first.click()
    trigger = page.locator("#cloudlora_cap_trigger").first
    expect(trigger).to_contain_text("1 caption(s) without their trigger word", timeout=60_000)
    expect(trigger).to_contain_text("10_mychar/2.png")
    tags = page.locator("#cloudlora_cap_tags").first
    expect(tags).to_contain_text("watermark")
    screenshot(page, "captions-review")

    tags.locator("td", has_text="watermark").first.click()  # picks the tag
    expect(page.locator("#cloudlora_cap_tag input").first).to_have_value("watermark", timeout=10_000)
    page.locator("#cloudlora_cap_remove").first.click()
    expect(page.locator("#cloudlora_cap_status").first).to_contain_text("Removed 'watermark' from 3 caption(s)",
                                                                         timeout=30_000)
    expect(tags).not_to_contain_text("watermark", timeout=30_000)
    assert (sub / "1.txt").read_text(encoding="utf-8").strip() == "mychar, 1girl, smile"

    table = page.locator("#cloudlora_cap_table").first
    cell = table.locator("td", has_text="1girl").last  # 2.png's caption, the last row
    expect(cell).to_have_text("1girl")
    cell.dblclick()
    editor = table.locator("td input, td textarea").first
    editor.fill("mychar, 1girl, a blue square")
    editor.press("Enter")
    page.locator("#cloudlora_cap_save").first.click()
    expect(page.locator("#cloudlora_cap_status").first).to_contain_text("Saved 1 caption(s)", timeout=30_000)
    expect(trigger).not_to_contain_text("without their trigger word", timeout=30_000)
    assert (sub / "2.txt").read_text(encoding="utf-8").strip() == "mychar, 1girl, a blue square"
    expect(page.locator("#cloudlora_cap_size").first).to_contain_text("to download once")
    expect(table.get_by_text("New row")).to_be_hidden()  # no row that is no image
    screenshot(page, "captions-reviewed")


def test_photos_without_captions_are_captioned_in_the_tab_and_reviewed(
        ui_server, browser_page, screenshot, tmp_path, hub_server, tiny_tagger, trainer_python):
    hub_server.add("SmilingWolf/wd-vit-tagger-v3", tiny_tagger)
    root = tmp_path / "photos"
    png(root / "10_mychar" / "red.png", color=(230, 10, 10))
    png(root / "10_mychar" / "blue.png", color=(10, 10, 230))
    base = ui_server(env={"CLOUDLORA_STORE": str(tmp_path / "store"), "CLOUDLORA_TRAINER_PYTHON": trainer_python})
    page = browser_page
    page.goto(base)
    page.locator(".tab-nav button", has_text="Cloud Asset Management").first.click()
    page.locator("#cloudlora_ds_folder textarea, #cloudlora_ds_folder input").first.fill(str(root))
    page.locator("#cloudlora_ds_validate").first.click()
    expect(page.locator("#cloudlora_cap_trigger").first).to_contain_text("2 image(s) without a caption",
                                                                          timeout=60_000)
    expect(page.locator("#cloudlora_cap_size").first).to_contain_text("to download once")  # the size, first

    page.locator("#cloudlora_cap_run").first.click()
    work = page.locator("#cloudlora_cap_work").first
    expect(work).to_contain_text("Captioned 2 image(s): 2 caption(s) written", timeout=120_000)
    expect(work).to_contain_text("1girl (2)")
    expect(page.locator("#cloudlora_cap_tags").first).to_contain_text("red theme", timeout=30_000)
    expect(page.locator("#cloudlora_ds_gallery").first).to_contain_text("mychar, hatsune miku, 1girl, red theme", timeout=30_000)
    expect(page.locator("#cloudlora_cap_trigger").first).not_to_contain_text("without a caption")
    expect(page.locator("#cloudlora_cap_size").first).to_contain_text("downloaded already")
    assert (root / "10_mychar" / "red.txt").read_text(encoding="utf-8").startswith("mychar, ")
    screenshot(page, "captions-captioned")
