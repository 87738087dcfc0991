"""A control-plane Lambda: the recipe every one of them used to repeat in its stack.

- its environment is exactly its settings class's ``to_env()`` (one class per function,
  ``tenant_provisioner/runtime/settings.py``; a mismatch between ``name`` and class fails synth);
- it runs in the control-plane network (private subnets, the security group RDS and Redis admit);
- failed asynchronous invocations are retried ``retry_attempts`` times within ``max_event_age``
  (None: Lambda's defaults), then parked in its dead-letter queue (KMS-encrypted: the role may
  use the queue's key to send);
- `read_secrets` gives it exactly the secrets it reads, with ``kms:Decrypt`` of the secrets key
  only through Secrets Manager (`via_service`), in one policy of its own;
- alarms: the observability stack finds it by its handler (``lambdas.<name>.handler.handler``) and
  pages on its errors, throttles and dead letters; its own metrics are named in
  ``tenant_provisioner/runtime/metrics.py``.
"""

from __future__ import annotations

from typing import Any, Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.constructs.dead_letter_queue import DeadLetterQueue
from stacks.constructs.python_function import LambdaNetwork, PythonFunction
from tenant_provisioner.runtime.settings import FUNCTION_SETTINGS


def via_service(scope: Construct, key: kms.IKey, service: str, actions: Sequence[str]) -> iam.PolicyStatement:
    """Use of `key` only on behalf of `service` (e.g. ``secretsmanager``) in this stack's region."""
    region = cdk.Stack.of(scope).region
    return iam.PolicyStatement(actions=list(actions), resources=[key.key_arn], conditions={
        "StringEquals": {"kms:ViaService": f"{service}.{region}.amazonaws.com"}})


class ControlPlaneFunction(PythonFunction):
    def __init__(self, scope: Construct, construct_id: str, *, name: str, description: str, settings: Any,
                 network: LambdaNetwork, log_key: kms.IKey, secrets_key: kms.IKey,
                 timeout: cdk.Duration, memory_size: int, reserved_concurrency: int | None,
                 dead_letter_queue: DeadLetterQueue | None = None, retry_attempts: int | None = 2,
                 max_event_age: cdk.Duration | None = None) -> None:
        expected = FUNCTION_SETTINGS.get(name)
        if expected is None or not isinstance(settings, expected):
            raise TypeError(f"lambdas/{name} reads {expected.__name__ if expected else 'no known settings'}, "
                            f"not {type(settings).__name__}")
        super().__init__(scope, construct_id, name=name, description=description, environment=settings.to_env(),
                         timeout=timeout, memory_size=memory_size, network=network, log_key=log_key,
                         reserved_concurrency=reserved_concurrency, dead_letter_queue=dead_letter_queue)
        self.secrets_key = secrets_key
        if dead_letter_queue is not None:
            dead_letter_queue.grant_encrypted_send(self.role)
        if dead_letter_queue is not None and retry_attempts is not None:
            self.function.configure_async_invoke(retry_attempts=retry_attempts, max_event_age=max_event_age)

    def read_secrets(self, policy_id: str, secrets: Sequence[str], *,
                     kms_actions: Sequence[str] = ("kms:Decrypt",),
                     statements: Sequence[iam.PolicyStatement] = ()) -> iam.Policy:
        """GetSecretValue/DescribeSecret on exactly `secrets` (ARNs), the secrets key only through
        Secrets Manager, and `statements`: one policy on the role, created in the stack under
        `policy_id` (statements on the role, so the key's policy never names this stack)."""
        return iam.Policy(cdk.Stack.of(self), policy_id, roles=[self.role], statements=[
            iam.PolicyStatement(actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                                resources=list(secrets)),
            via_service(self, self.secrets_key, "secretsmanager", kms_actions),
            *statements,
        ])
