"""The standalone app: the same two tabs as inside the WebUI, as a plain gradio app on 127.0.0.1, plus the REST API.

For people without A1111, and for the browser tests. `cloudlora ui` calls serve().
"""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

# gradio 3.x phones home (analytics, version check) unless told not to; nothing here may leave the machine.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

JS_FILE = Path(__file__).resolve().parents[2] / "javascript" / "cloudlora.js"
CSS_FILE = Path(__file__).resolve().parents[2] / "style.css"  # the WebUI loads it by itself
JS_NAMES = ["cloudloraUseInTxt2img", "cloudloraRefreshLoras"]


def _gradio_major() -> int:
    import gradio as gr

    return int(gr.__version__.split(".")[0])


def _page_helpers_js() -> str | None:
    """javascript/cloudlora.js as a load-time function that defines the helpers on window (the WebUI loads the file
    itself; here there is no txt2img, so they find nothing to do, but events that name them still work)."""
    if not JS_FILE.exists():
        return None
    exports = "".join(f"window.{n} = typeof {n} === 'function' ? {n} : window.{n};" for n in JS_NAMES)
    return "() => {\n" + JS_FILE.read_text(encoding="utf-8") + "\n" + exports + "\n}"


def build_app():
    """A gr.Blocks with one gr.Tab per WebUI tab (each tab's Blocks rendered inside it, as A1111 does)."""
    import gradio as gr

    from . import build_tabs

    tabs = build_tabs()
    css = CSS_FILE.read_text(encoding="utf-8") if CSS_FILE.exists() else None
    with gr.Blocks(title="Cloud LoRA Trainer", analytics_enabled=False, css=css) as demo:
        for blocks, title, elem_id in tabs:
            with gr.Tab(title, id=elem_id, elem_id=f"tab_{elem_id}"):
                blocks.render()
        js = _page_helpers_js()
        if js:
            demo.load(None, None, None, **({"_js": js} if _gradio_major() < 4 else {"js": js}))
    return demo


def _queue(demo) -> None:
    # 3.41's first queue() argument is concurrency_count, 4.x's is not; so name it, per version.
    if _gradio_major() < 4:
        demo.queue(concurrency_count=8)
    else:
        demo.queue(default_concurrency_limit=8)


def serve(port: int | None = None, api_auth: str | None = None, block: bool = True):
    """Starts the app on 127.0.0.1 (port None: gradio picks a free one from 7860) with the REST routes mounted.

    With block=True it runs until Ctrl+C or SIGTERM, then stops background work; returns (demo, app, url), the url
    with its secret token (ui/access.py: only the user reaches the app).
    """
    from .. import api, background, server_logs
    from . import access
    from .gradio_support import require_supported_gradio, unbounded_queue_calls

    require_supported_gradio()
    server_logs.ignore_closed_pages()
    gate = access.Access()
    access.prepare_environment()
    demo = build_app()
    _queue(demo)
    unbounded_queue_calls(demo)
    # quiet: gradio's own banner ends with "set `share=True`", which this app never does; the line below says it all.
    app, url, _ = demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                              show_error=True, inbrowser=False, share=False, quiet=True,
                              **access.launch_kwargs(gate))
    access.protect(app)
    access.start_gradio(url, gate)
    api.mount(app, api_auth, access.POLICY)
    from ..webui import cap_graceful_shutdown  # imports no `modules.*` at module level

    cap_graceful_shutdown(demo)
    url = gate.url(url)
    print(f"Cloud LoRA Trainer: {url}\n  (REST: {api.PREFIX}/... with the header {access.HEADER_NAME}: {gate.token})",
          flush=True)
    if not block:
        return demo, app, url
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        print("stopping", flush=True)
        server_logs.stopping()  # the polling connections it cancels now are no error
        background.stop_all()
        # gradio's close() waits for open browser connections (polling events) to end; give it a few seconds,
        # then leave anyway: its server threads are daemons and end with the process.
        closer = threading.Thread(target=demo.close, name="cloudlora-close", daemon=True)
        closer.start()
        closer.join(5)
    return demo, app, url
