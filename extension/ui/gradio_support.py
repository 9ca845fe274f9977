"""Which gradio the tabs run on, and what the standalone app does so that each one behaves.

The tabs are written for gradio 3.41 (A1111 1.10) and 4.40 (Forge). The standalone app (`cloudlora ui`) refuses any
other gradio with the fix (the `ui` extra installs the supported one) instead of crashing half-way through building
the page; and on gradio 3.x it takes the 5 s limit off the queue's own HTTP calls (below).
"""
from __future__ import annotations

from ..errors import UserError

SUPPORTED = {3: "3.41 (as in A1111 1.10)", 4: "4.40 (as in Forge)"}
INSTALL_FIX = ('Install the standalone app with the gradio it supports, in a venv of its own: '
               'pip install -e ".[ui]" (from the extension folder).')


def gradio_major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def require_supported_gradio() -> str:
    """The installed gradio's version; a UserError naming the fix when it is missing, broken or unsupported."""
    try:
        import gradio
    except ImportError as err:
        what = "is not installed" if getattr(err, "name", "") == "gradio" else "does not import"
        raise UserError(f"The standalone app needs gradio, which {what} in this Python: {err}.", INSTALL_FIX) from err
    version = str(getattr(gradio, "__version__", "0"))
    if gradio_major(version) not in SUPPORTED:
        raise UserError(f"gradio {version} is installed; the standalone app runs on gradio "
                        f"{' or '.join(SUPPORTED.values())}, and newer majors changed the components it uses.",
                        INSTALL_FIX)
    return version


def unbounded_queue_calls(demo) -> None:
    """gradio 3.x's queue runs every event by calling the app's own /api/predict through an httpx client made with
    httpx's default 5 s timeout. httpx 0.24 (A1111's pin) never applied it to those calls; httpx >= 0.28 does, so
    any action longer than 5 s ended as a bare "Error". Once the queue has made its client, it gets one without a
    limit instead (the action's own code bounds its work). gradio 4 calls its functions directly: nothing to do."""
    queue = getattr(demo, "_queue", None)
    if queue is None or not hasattr(queue, "queue_client") or getattr(queue, "_cloudlora_unbounded", False):
        return
    import httpx

    start = queue.start

    async def start_unbounded(ssl_verify=True, *args, **kwargs):
        result = await start(ssl_verify, *args, **kwargs)
        queue.queue_client = httpx.AsyncClient(verify=ssl_verify, timeout=None)
        return result

    queue.start = start_unbounded
    queue._cloudlora_unbounded = True
