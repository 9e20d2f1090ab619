"""``python -m service``: run the OCR API under uvicorn.

SIGTERM first flips /readyz to 503 and keeps serving for ``OCR_SHUTDOWN_DRAIN_S`` (so load balancers stop
sending), then uvicorn stops accepting, lets in-flight requests finish, and the process exits 0.
A second SIGTERM or SIGINT skips the drain.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from types import FrameType

import uvicorn

from service.api.app import create_app
from service.api.server import protocol_class
from service.api.state import ServiceState
from service.errors import ModelLoadError
from service.logs import log_from_signal
from service.startup import EXIT_NO_MODEL, EXIT_PORT, boot, check_model_files

log = logging.getLogger("service")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServiceState) -> None:
        super().__init__(config)
        self.state = state
        self._draining = False

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the captured signal after shutdown, so the process would die "by SIGTERM";
        # a drained, clean shutdown exits 0 instead, which is what Kubernetes and KEDA expect.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining or self.state.settings.shutdown_drain_s == 0:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self.state.begin_shutdown()
        drain = self.state.settings.shutdown_drain_s
        log_from_signal(
            log, "signal %s: not ready; draining for %.1fs before shutdown", signal.Signals(sig).name, drain
        )
        timer = threading.Timer(drain, super().handle_exit, args=(sig, frame))
        timer.daemon = True
        timer.start()


def main() -> int:
    settings = boot("service")
    try:
        check_model_files(settings)  # fail fast, before the port opens
    except ModelLoadError as exc:
        log.critical("cannot start: %s", exc)
        return EXIT_NO_MODEL
    try:
        listener = bind(settings.host, settings.port)
    except OSError as exc:
        taken = exc.errno == errno.EADDRINUSE
        why = "is taken by another process" if taken else f"cannot be opened ({exc.strerror})"
        log.critical("cannot start: port %s on %s %s; OCR_PORT chooses another", settings.port, settings.host, why)
        return EXIT_PORT

    def fatal(exc: BaseException) -> None:
        log.critical("stopping: the model could not be loaded (%s)", exc)
        os.kill(os.getpid(), signal.SIGTERM)

    app = create_app(settings, on_fatal=fatal)
    state: ServiceState = app.state.service
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # h11 with the service's JSON answers to malformed requests, and a deadline on request heads.
        http=protocol_class(header_timeout_s=settings.header_timeout_s, metrics=state.metrics),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
        server_header=False,
    )
    server = DrainingServer(config, state)
    server.run(sockets=[listener])
    return EXIT_NO_MODEL if app.state.service.load_error else 0


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port already taken is said plainly (exit 4), not as a
    failed start-up later."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    listener.set_inheritable(True)
    return listener


if __name__ == "__main__":
    sys.exit(main())
