"""The standalone app (`cloudlora ui`) as a user without the WebUI meets it: the README's install works in a fresh
venv, the app never sends anyone to `share=True`, closing a page or stopping the app prints no traceback, an action
over 5 s is not cut off as a bare "Error", and an unsupported gradio is refused with the fix."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.webui.fixtures.browser import _free_port

ROOT = Path(__file__).resolve().parents[2]


def _quiet(log_text: str) -> None:
    for noise in ("Traceback", "Exception in ASGI application", "share=True", "Task exception was never retrieved"):
        assert noise not in log_text, f"the app's output has {noise!r}:\n{log_text[-3000:]}"


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


def test_pip_install_of_the_ui_extra_in_a_fresh_venv_gives_a_working_cloudlora_ui(tmp_path, browser_page,
                                                                                  standalone_venv):
    venv = standalone_venv  # pip install -e ".[ui]" in a fresh venv, pip check passed (fixtures/standalone.py)
    port, token = _free_port(), "fresh-venv-token"
    log = tmp_path / "ui.log"
    proc = subprocess.Popen([str(venv / "bin" / "cloudlora"), "ui", "--port", str(port)], cwd=tmp_path,
                            env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "CLOUDLORA_UI_TOKEN": token},
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(base + "/cloudlora/v1/version",
                                                              headers={"X-CloudLoRA-Token": token}), timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(0.5)
        page = browser_page
        page.goto(f"{base}/?token={token}")
        page.locator("button", has_text="Train Management").first.click()
        expect(page.locator("#cloudlora_create_job")).to_be_visible(timeout=60_000)
        expect(page.locator("#cloudlora_estimate").last).to_contain_text("steps", timeout=60_000)
        page.locator("button", has_text="Cloud Asset Management").first.click()
        page.locator("#cloudlora_check_connection").click()
        expect(page.get_by_text("trainer environment").first).to_be_visible(timeout=120_000)
    finally:
        code = _stop(proc)
    assert code == 0
    text = log.read_text(errors="replace")
    _quiet(text)
    assert f"Cloud LoRA Trainer: {base}" in text


def test_stopping_the_app_with_pages_open_is_quiet(ui_server, browser_page):
    url = ui_server()
    page = browser_page
    page.goto(url)
    page.locator(".tab-nav button", has_text="Train Management").first.click()
    expect(page.locator("#cloudlora_job_status").last).to_contain_text("No job selected")
    page.wait_for_timeout(7000)  # the tab's refresh ticks keep connections open
    proc, log = ui_server.servers[url]
    assert _stop(proc) == 0
    _quiet(log.read_text(errors="replace"))


def test_closing_a_page_while_it_connects_is_not_an_error(ui_server):
    from websockets.sync.client import connect

    url = ui_server()
    base, key = url.split("/?")[0], {"X-CloudLoRA-Token": ui_server.token}
    urllib.request.urlopen(urllib.request.Request(base + "/", headers=key), timeout=30).read()
    for _ in range(3):  # the browser goes away (1001) right after gradio's queue greeted it
        with connect(base.replace("http", "ws") + "/queue/join", origin=base, additional_headers=key) as ws:
            assert "send_hash" in ws.recv(timeout=10)
            ws.close(code=1001)
    time.sleep(2)
    proc, log = ui_server.servers[url]
    assert proc.poll() is None
    _quiet(log.read_text(errors="replace"))


def test_gradio_3s_queue_calls_carry_no_5_second_limit():
    """gradio 3.41 runs each event through its own /api/predict with an httpx client; httpx >= 0.28 applies its
    5 s default to those calls (every slower action became a bare "Error"). The app takes the limit off."""
    import asyncio

    import gradio as gr

    from cloudlora.ui.gradio_support import unbounded_queue_calls

    with gr.Blocks() as demo:
        gr.Button("slow").click(lambda: time.sleep(0.01))
    demo.queue()
    unbounded_queue_calls(demo)

    async def start_the_queue():
        await demo._queue.start()
        demo._queue.close()
        return demo._queue.queue_client.timeout

    timeout = asyncio.run(start_the_queue())
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (None, None, None, None)


def test_a_gradio_the_tabs_were_not_written_for_is_refused_with_the_fix(monkeypatch):
    import gradio

    from cloudlora.errors import UserError
    from cloudlora.ui.gradio_support import require_supported_gradio

    assert require_supported_gradio() == gradio.__version__
    monkeypatch.setattr(gradio, "__version__", "6.31.0")
    with pytest.raises(UserError) as err:
        require_supported_gradio()
    assert "gradio 6.31.0 is installed" in err.value.message
    assert 'pip install -e ".[ui]"' in err.value.fix
