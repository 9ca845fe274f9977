"""Which of the web server's log records are noise: a browser page closing, and a server that is stopping.

Closing a page is not an error, yet gradio 3.41's queue lets the browser's "going away" (WebSocketDisconnect 1001)
escape from its websocket route, and uvicorn logs each one as "Exception in ASGI application" with a traceback.
A stopping server cancels the tabs' polling connections, and each cancellation is logged the same way (60
tracebacks on one SIGTERM were seen). Both are dropped here; every other record passes.

Plain logging: the WebUI glue and the standalone app install the same filter.
"""
from __future__ import annotations

import logging

SERVER_LOGGER = "uvicorn.error"  # uvicorn logs the exceptions of ASGI apps here
_NOISE = ("WebSocketDisconnect", "ClientDisconnect", "CancelledError")


def _cause_chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


class ClosedPageFilter(logging.Filter):
    """Drops a record whose exception is (or was caused by) a client that went away; keeps every other one."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not any(type(e).__name__ in _NOISE for e in _cause_chain(exc))


class _Stopping(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:  # everything after the stop began is the stop's own noise
        return record.levelno >= logging.CRITICAL


_FILTER = ClosedPageFilter()
_STOPPING = _Stopping()


def ignore_closed_pages() -> None:
    """Installs the closed-page filter on uvicorn's error logger (idempotent: Reload UI runs this again)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, ClosedPageFilter) for f in logger.filters):
        logger.addFilter(_FILTER)


def stopping() -> None:
    """The server is being stopped on purpose: its cancelled connections and unfinished queue tasks say nothing.

    Silences uvicorn's error logger and asyncio's "Task exception was never retrieved" for the rest of the process
    (called only on the way out of `cloudlora ui`)."""
    for name in (SERVER_LOGGER, "asyncio"):
        logger = logging.getLogger(name)
        if _STOPPING not in logger.filters:
            logger.addFilter(_STOPPING)
