"""Regenerates the README's screenshots (assets-tab.png, train-tab.png) from the standalone app.

    .venv/webui/bin/python docs/screenshots/make_screenshots.py [--model tiny.safetensors] [--trainer-python PY]

It uses a throwaway home (settings, local store) with the sample dataset and, when given or built already, the tiny
SD 1.5 checkpoint uploaded, so the lists are not empty; serves `cloudlora ui` on a free loopback port; and takes the
pictures with Debian's Chromium (every request that is not to 127.0.0.1 is aborted). The Train Management picture
is taken the way a user sees it after Create Training Job: a real local job on the tiny model, mid-run, in a
1280x900 window (no scrolling), so the job's progress shows under the button. The job is stopped afterwards.
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settle(page) -> None:
    """Waits until gradio's first loads (lists, plots) have finished: no "processing" overlay left."""
    page.wait_for_timeout(1500)
    deadline = time.monotonic() + 60
    while page.get_by_text("processing |").count() and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    page.wait_for_timeout(500)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / ".cache" / "tiny" / "tiny-sd15.safetensors")
    ap.add_argument("--trainer-python", type=Path, default=ROOT / ".venv" / "trainer" / "bin" / "python")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cloudlora-shots-"))
    env = {**os.environ, "CLOUDLORA_CONFIG_DIR": str(home / "config"), "CLOUDLORA_DATA_DIR": str(home / "data"),
           "CLOUDLORA_STORE": str(home / "store"), "AWS_CONFIG_FILE": str(home / "aws-config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"), "AWS_EC2_METADATA_DISABLED": "true",
           "GRADIO_ANALYTICS_ENABLED": "False", "CLOUDLORA_UI_TOKEN": secrets.token_urlsafe(16),
           "CLOUDLORA_TRAINER_PYTHON": str(args.trainer_python), "CLOUDLORA_LORA_DIR": str(home / "Lora")}
    for var in ("AWS_PROFILE", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CLOUDLORA_BUCKET"):
        env.pop(var, None)
    cli = [sys.executable, "-m", "cloudlora"]
    if args.model.exists():
        subprocess.run(cli + ["model", "upload", str(args.model), "--name", "tiny-sd15"], env=env, check=True)
    subprocess.run(cli + ["dataset", "upload", str(ROOT / "samples" / "dataset"), "--name", "demo"], env=env,
                   check=True)
    job_id = ""
    port = _free_port()
    server = subprocess.Popen(cli + ["ui", "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(urllib.request.Request(
                    base + "/cloudlora/v1/version", headers={"X-CloudLoRA-Token": env["CLOUDLORA_UI_TOKEN"]}), timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", lambda r: r.continue_() if urlparse(r.request.url).hostname in ("127.0.0.1",
                                                                                                "localhost")
                       else r.abort())
            page.goto(f"{base}/?token={env['CLOUDLORA_UI_TOKEN']}")  # the address `cloudlora ui` prints
            page.locator(".tab-nav button", has_text="Cloud Asset Management").first.click()
            _settle(page)
            page.screenshot(path=str(OUT / "assets-tab.png"), full_page=True)
            print(f"wrote {OUT / 'assets-tab.png'}")

            page.locator(".tab-nav button", has_text="Train Management").first.click()
            _settle(page)
            if args.model.exists():  # a job mid-run, as the user sees it right after Create Training Job
                for key, value in (("max_train_steps", "400"), ("resolution", "64")):
                    box = page.locator(f"#cloudlora_knob_{key} textarea, #cloudlora_knob_{key} input").first
                    box.fill(value)
                    box.press("Tab")
                page.locator("#cloudlora_create_job").click()
                facts = page.locator("#cloudlora_job_status .cloudlora-facts").first
                facts.wait_for(timeout=300_000)
                deadline = time.monotonic() + 300
                while "it/s" not in (facts.text_content() or "") and time.monotonic() < deadline:
                    page.wait_for_timeout(500)
                page.wait_for_timeout(3500)  # one more refresh: the bar has moved
                job_id = page.locator("#cloudlora_job_id textarea, #cloudlora_job_id input").first.input_value()
            page.screenshot(path=str(OUT / "train-tab.png"))  # the window, not the whole page
            print(f"wrote {OUT / 'train-tab.png'}")
            browser.close()
    finally:
        if job_id:
            subprocess.run(cli + ["stop", job_id], env=env, check=False)
        server.send_signal(signal.SIGTERM)
        server.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
