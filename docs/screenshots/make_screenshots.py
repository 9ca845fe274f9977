"""Regenerates the README's screenshots (assets-tab.png, train-tab.png) from the standalone app.

    .venv/webui/bin/python docs/screenshots/make_screenshots.py [--model tiny.safetensors]

It uses a throwaway home (settings, local store) with the sample dataset and, when given or built already, the tiny
SD 1.5 checkpoint uploaded, so the lists are not empty; serves `cloudlora ui` on a free loopback port; and takes the
pictures with Debian's Chromium (every request that is not to 127.0.0.1 is aborted).
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / ".cache" / "tiny" / "tiny-sd15.safetensors")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cloudlora-shots-"))
    env = {**os.environ, "CLOUDLORA_CONFIG_DIR": str(home / "config"), "CLOUDLORA_DATA_DIR": str(home / "data"),
           "CLOUDLORA_STORE": str(home / "store"), "AWS_CONFIG_FILE": str(home / "aws-config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"), "AWS_EC2_METADATA_DISABLED": "true",
           "GRADIO_ANALYTICS_ENABLED": "False", "CLOUDLORA_UI_TOKEN": secrets.token_urlsafe(16)}
    for var in ("AWS_PROFILE", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CLOUDLORA_BUCKET"):
        env.pop(var, None)
    cli = [sys.executable, "-m", "cloudlora"]
    if args.model.exists():
        subprocess.run(cli + ["model", "upload", str(args.model), "--name", "tiny-sd15"], env=env, check=True)
    subprocess.run(cli + ["dataset", "upload", str(ROOT / "samples" / "dataset"), "--name", "demo"], env=env,
                   check=True)
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
            for name, tab in (("assets-tab", "Cloud Asset Management"), ("train-tab", "Train Management")):
                page.locator(".tab-nav button", has_text=tab).first.click()
                page.wait_for_timeout(1500)
                # Wait until gradio's "processing" overlays (the first loads of lists and plots) are gone.
                deadline = time.monotonic() + 60
                while page.get_by_text("processing |").count() and time.monotonic() < deadline:
                    page.wait_for_timeout(500)
                page.wait_for_timeout(500)
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
                print(f"wrote {OUT / f'{name}.png'}")
            browser.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
