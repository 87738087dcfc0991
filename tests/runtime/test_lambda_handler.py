"""The handlers' shared decorator: clients built once per container, typed errors mapped once."""

from __future__ import annotations

import pytest

from tenant_provisioner.errors import ConfigError, InvalidInput, TenantConflict, TransientError
from tenant_provisioner.runtime.lambda_handler import LambdaFunction
from tests.support.lambda_context import LambdaContext

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


class Clients:
    built = 0
    closed = 0

    def __init__(self) -> None:
        Clients.built += 1

    def close(self) -> None:
        Clients.closed += 1


def _function(**options) -> LambdaFunction:
    Clients.built = Clients.closed = 0
    return LambdaFunction(namespace="Test/Runtime", build=Clients, **options)


def test_clients_are_built_once_per_container_and_rebuilt_after_forget():
    function = _function()
    seen = []

    @function.handler
    def handler(event, context):
        seen.append(function.clients)
        return {"ok": True}

    assert handler({}, LambdaContext()) == {"ok": True}
    handler(None, LambdaContext())
    assert Clients.built == 1 and seen[0] is seen[1]
    function.forget()
    handler({}, LambdaContext())
    assert (Clients.built, Clients.closed) == (2, 1)


@pytest.mark.parametrize("error", [InvalidInput("tenant_id", "bad"), TenantConflict("exists")])
def test_bad_requests_are_answered_not_retried(error):
    function = _function()

    @function.handler
    def handler(event, context):
        raise error

    answer = handler({}, LambdaContext())
    assert answer["status"] == "rejected" and answer["error"]["code"] == error.code
    assert ("field" in answer["error"]) is isinstance(error, InvalidInput)


@pytest.mark.parametrize(("rejects", "error"), [
    ((InvalidInput,), TransientError("database down")),   # retryable: always raised
    ((InvalidInput,), ConfigError("no table")),          # not a type this function answers
    ((), InvalidInput("tenant_ids", "bad")),             # scheduled functions answer nothing
])
def test_other_failures_are_raised_for_the_retry_and_the_dead_letter_queue(rejects, error):
    function = _function(rejects=rejects)

    @function.handler
    def handler(event, context):
        raise error

    with pytest.raises(type(error)):
        handler({}, LambdaContext())
