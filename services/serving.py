"""Run an ASGI app with uvicorn (default) or granian, draining on SIGTERM.

Graceful shutdown: on SIGTERM/SIGINT readiness turns 503 at once (``runtime.draining``), the
listening socket closes (no new connections), in-flight requests get up to
``SHUTDOWN_GRACE_SECONDS`` to finish, then the lifespan closes the pools. Kubernetes should give
the pod ``terminationGracePeriodSeconds`` > the grace (issue 13's manifests do).
"""

from __future__ import annotations

import logging
from typing import Any

from services.settings import ServiceSettings

log = logging.getLogger("saas.serving")


def serve_uvicorn(app: Any, settings: ServiceSettings, *, on_exit: Any = None) -> None:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if on_exit is not None:
                on_exit()
            log.info("signal received: draining", extra={"fields": {"signal": sig,
                                                                    "grace_s": settings.shutdown_grace_seconds}})
            super().handle_exit(sig, frame)

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
