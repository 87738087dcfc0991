"""Release steps: migrations through the operator function (Stubber: moto cannot run a Lambda without
Docker) and the /readyz smoke test against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from tools.release import ReleaseError, migrate, smoke

REGION = "us-east-1"
RESOURCES = {"StackResources": [
    {"LogicalResourceId": "ProvisionerFunction1234", "PhysicalResourceId": "saas-dev-tenants-Provisioner-abc",
     "ResourceType": "AWS::Lambda::Function", "ResourceStatus": "UPDATE_COMPLETE", "Timestamp": "2026-11-29"},
    {"LogicalResourceId": "TenantOperationsFunction5678", "PhysicalResourceId": "saas-dev-tenants-TenantOperations-def",
     "ResourceType": "AWS::Lambda::Function", "ResourceStatus": "UPDATE_COMPLETE", "Timestamp": "2026-11-29"}]}


def _payload(value, error: str | None = None) -> dict:
    body = json.dumps(value).encode()
    response = {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(body), len(body))}
    return {**response, "FunctionError": error} if error else response


def _clients(*invocations):
    cloudformation, lambda_client = (boto3.client(s, region_name=REGION) for s in ("cloudformation", "lambda"))
    cfn_stub, lambda_stub = Stubber(cloudformation), Stubber(lambda_client)
    cfn_stub.add_response("describe_stack_resources", RESOURCES, {"StackName": "saas-dev-tenants"})
    for expected_event, response in invocations:
        lambda_stub.add_response("invoke", response, {
            "FunctionName": "saas-dev-tenants-TenantOperations-def", "InvocationType": "RequestResponse",
            "Payload": json.dumps(expected_event).encode()})
    cfn_stub.activate()
    lambda_stub.activate()
    return cloudformation, lambda_client, lambda_stub


def test_migrations_run_init_then_migrate_on_the_operator_function_not_the_signup_one():
    cloudformation, lambda_client, stub = _clients(
        ({"action": "init"}, _payload({"applied": [3], "version": 3, "unhardened": []})),
        ({"action": "migrate", "concurrency": 4}, _payload({"migrated": 12, "failed": []})))
    result = migrate(cloudformation=cloudformation, lambda_client=lambda_client, environment="dev")
    assert result["function"] == "saas-dev-tenants-TenantOperations-def" and result["migrate"]["migrated"] == 12
    stub.assert_no_pending_responses()


@pytest.mark.parametrize(("migrate_response", "message"), [
    (_payload({"migrated": 10, "failed": ["t_acme"]}), "1 tenant migration"),
    (_payload({"status": "rejected", "error": {"code": "invalid_input"}}), "rejected"),
    (_payload({"errorMessage": "timeout"}, error="Unhandled"), "failed in"),
])
def test_a_failed_or_rejected_migration_fails_the_release(migrate_response, message):
    cloudformation, lambda_client, _ = _clients(
        ({"action": "init"}, _payload({"applied": [], "version": 3, "unhardened": []})),
        ({"action": "migrate", "concurrency": 4}, migrate_response))
    with pytest.raises(ReleaseError, match=message):
        migrate(cloudformation=cloudformation, lambda_client=lambda_client, environment="dev")


def test_no_operator_function_says_to_deploy_the_tenants_stack():
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    stub = Stubber(cloudformation)
    stub.add_response("describe_stack_resources", {"StackResources": RESOURCES["StackResources"][:1]}, {"StackName": ANY})
    stub.activate()
    with pytest.raises(ReleaseError, match="deploy the tenants stack"):
        migrate(cloudformation=cloudformation, lambda_client=None, environment="dev")


@pytest.fixture
def api():
    """/readyz answers 503 twice, then 200."""
    answers = [503, 503, 200]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            status = answers.pop(0) if len(answers) > 1 else answers[0]
            body = b'{"status":"ready"}' if status == 200 else b'{"status":"starting"}'
            self.send_response(status if self.path == "/readyz" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_smoke_waits_for_readyz_to_answer_200(api):
    assert smoke(api, timeout_seconds=5, interval_seconds=0) == '{"status":"ready"}'


def test_smoke_fails_with_the_last_answer_when_never_ready():
    ticks = iter(range(100))
    with pytest.raises(ReleaseError, match="did not answer 200 within 3 s; last: .*refused"):
        smoke("http://127.0.0.1:9", timeout_seconds=3, interval_seconds=0, clock=lambda: next(ticks), sleep=lambda _: None)
