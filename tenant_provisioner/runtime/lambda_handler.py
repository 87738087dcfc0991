"""What every Lambda handler shares: Powertools logging and metrics, clients built once per
container, and one mapping of our typed errors to the answer.

    function = LambdaFunction(namespace=TenantMetrics.NAMESPACE,
                              build=lambda: compose.for_provisioning(ProvisionTenantSettings.from_env()))

    @function.handler
    def handler(event, context):
        platform = function.clients        # built on the first invocation, reused while warm
        ...

Errors: a retryable `PlatformError` (and anything that is not a `PlatformError`) is raised, so
a synchronous caller retries and an asynchronous invocation goes to the retry policy and then
the dead-letter queue; a non-retryable one of the types in ``rejects`` becomes `rejection(exc)`
(by default ``{"status": "rejected", "error": {"code", "message"[, "field"]}}``) so nobody
retries bad input. ``rejects=()`` raises everything (scheduled functions: a failure must page).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Generic, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities import parameters

from tenant_provisioner.errors import InvalidInput, PlatformError

T = TypeVar("T")
Handler = Callable[[Any, Any], Any]


def rejection(exc: PlatformError) -> dict[str, Any]:
    """The structured answer to a request we refuse (nothing was changed)."""
    error: dict[str, Any] = {"code": exc.code, "message": str(exc)}
    if isinstance(exc, InvalidInput):
        error["field"] = exc.field
    return {"status": "rejected", "error": error}


class LambdaFunction(Generic[T]):
    """One function's container-wide state: logger, metrics and its clients (built once)."""

    def __init__(self, *, namespace: str, build: Callable[[], T],
                 rejects: tuple[type[PlatformError], ...] = (PlatformError,),
                 rejection: Callable[[Any], dict[str, Any]] = rejection) -> None:
        self.logger = Logger()
        self.metrics = Metrics(namespace=namespace)
        self._build = build
        self._clients: T | None = None
        self._rejects = rejects
        self._rejection = rejection

    @property
    def clients(self) -> T:
        if self._clients is None:
            self._clients = self._build()
        return self._clients

    def forget(self) -> None:
        """Drop the clients and cached secrets (e.g. after a connection failure: the master password
        may have rotated); the next invocation builds them again."""
        close = getattr(self._clients, "close", None)
        if close is not None:
            close()
        self._clients = None
        parameters.clear_caches()

    def handler(self, fn: Handler) -> Handler:
        @functools.wraps(fn)
        def run(event: Any, context: Any) -> Any:
            try:
                return fn(event, context)
            except PlatformError as exc:
                if exc.retryable or not isinstance(exc, self._rejects):
                    raise
                self.logger.warning("request rejected", extra={"code": exc.code, "reason": str(exc)})
                return self._rejection(exc)

        return self.metrics.log_metrics(self.logger.inject_lambda_context(run, clear_state=True))
