"""Run an ASGI app with uvicorn (default) or granian, draining on SIGTERM.

Graceful shutdown: on SIGTERM/SIGINT readiness turns 503 at once (``runtime.draining``) while
requests are still served for ``SHUTDOWN_DELAY_SECONDS`` (the time Kubernetes needs to take the
pod out of its Service endpoints; 0 = none), then the listening socket closes, in-flight requests
get up to ``SHUTDOWN_GRACE_SECONDS`` to finish, and the lifespan closes the pools. Connections
still in the kernel's accept queue when the socket closes are reset, which is why the delay
exists: the pod must stop receiving traffic before it stops listening. Give the pod a
``terminationGracePeriodSeconds`` above delay + grace.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from services.settings import ServiceSettings

log = logging.getLogger("saas.serving")


def serve_uvicorn(app: Any, settings: ServiceSettings, *, on_exit: Any = None) -> None:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        draining = False

        def handle_exit(self, sig: int, frame: Any) -> None:
            if on_exit is not None:
                on_exit()
            if self.draining or settings.shutdown_delay_seconds <= 0:
                super().handle_exit(sig, frame)  # no delay, or a second signal: stop accepting now
                return
            self.draining = True
            log.info("signal received: draining", extra={"fields": {
                "signal": sig, "delay_s": settings.shutdown_delay_seconds, "grace_s": settings.shutdown_grace_seconds}})
            timer = threading.Timer(settings.shutdown_delay_seconds, super().handle_exit, (sig, frame))
            timer.daemon = True
            timer.start()

    config = uvicorn.Config(app, host=settings.host, port=settings.port, loop="uvloop", http="httptools",
                            lifespan="on", log_config=None, access_log=False, server_header=False,
                            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) or None,
                            backlog=2048)
    DrainingServer(config).run()


def serve_granian(target: str, settings: ServiceSettings) -> None:
    """granian runs `target` (``module:factory``) in its worker process and drains on SIGTERM."""
    from granian.constants import Interfaces, Loops
    from granian.server import Server

    Server(target, address=settings.host, port=settings.port, interface=Interfaces.ASGI, workers=1,
           loop=Loops.uvloop, factory=True, log_access=False, backlog=2048,
           workers_kill_timeout=int(settings.shutdown_grace_seconds) or None).serve()
