"""A start()/stop() pair usable as a context manager, and a socketserver run in a thread."""

from __future__ import annotations

import socketserver
import threading
from types import TracebackType
from typing import Any, Self


class Service:
    """Subclasses define ``start() -> Self`` and ``stop()``; ``with`` calls both."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> Any:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_in_thread(server: socketserver.BaseServer) -> threading.Thread:
    """``server.serve_forever`` in a started daemon thread."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    return thread


def stop_serving(server: socketserver.BaseServer | None, thread: threading.Thread | None) -> None:
    """Shut ``server`` down and wait (bounded) for its thread."""
    if server is not None:
        server.shutdown()
        server.server_close()
    if thread is not None:
        thread.join(timeout=5)
