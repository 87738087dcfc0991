"""The one way a control-plane component builds its dead-letter queue.

A dead-letter queue holds the events that could not be processed (a signup's admin email and
company name, a budget notification, a scheduled run), so it is encrypted with a customer-managed
KMS key (rotation on; checkov CKV_AWS_27 accepts nothing else), accepts TLS only and keeps a message
for 14 days, the SQS maximum, so a weekend or a holiday never loses a failure before someone reads it.

It is an ``sqs.Queue`` (construct id and logical id unchanged from a plain queue), so it goes
wherever a queue goes: ``dead_letter_queue=`` of a function, rule target, schedule target or
subscription. Those only allow ``sqs:SendMessage``; with a KMS key the sender must also be allowed
to use the key (SQS encrypts with the sender's own permissions):

- a role that sends (Lambda's asynchronous DLQ uses the function's role, EventBridge Scheduler
  its schedule role): :meth:`grant_encrypted_send`;
- a service principal that sends (EventBridge rule targets, SNS subscriptions):
  :meth:`allow_delivery_from`, which edits the key policy, so the key must belong to this stack.

The queue itself needs no dead-letter queue of its own (cdk-nag's SQS3 does not report a queue that
serves as one).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

RETENTION = cdk.Duration.days(14)
_KEY_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey"]


class DeadLetterQueue(sqs.Queue):
    """A KMS-encrypted, TLS-only queue that keeps failed events for 14 days."""

    def __init__(self, scope: Construct, construct_id: str, *, purpose: str,
                 encryption_key: kms.IKey | None = None) -> None:
        """``purpose`` names what fails into the queue (key description); without ``encryption_key``
        the queue gets a key of its own (``<construct_id>Key``, beside the queue)."""
        key = encryption_key or kms.Key(scope, f"{construct_id}Key", enable_key_rotation=True,
                                        description=f"Dead-letter queue: {purpose}",
                                        removal_policy=cdk.RemovalPolicy.DESTROY)
        super().__init__(scope, construct_id, encryption=sqs.QueueEncryption.KMS, encryption_master_key=key,
                         enforce_ssl=True, retention_period=RETENTION)
        self.key = key

    def grant_encrypted_send(self, grantee: iam.IGrantable) -> None:
        """Let ``grantee`` (a role that already may ``sqs:SendMessage`` here) encrypt its messages:
        the key's data-key actions, only through SQS in this region, on the grantee's own policy."""
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            actions=_KEY_ACTIONS, resources=[self.key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"sqs.{cdk.Stack.of(self).region}.amazonaws.com"}}))

    def allow_delivery_from(self, service: str) -> None:
        """Let AWS service ``service`` (e.g. ``events.amazonaws.com``) deliver failed events of this
        account: a key-policy statement (a service principal has no IAM policy of its own)."""
        added = self.key.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal(service)], actions=_KEY_ACTIONS, resources=["*"],
            conditions={"StringEquals": {"aws:SourceAccount": cdk.Stack.of(self).account}}))
        if not added.statement_added:
            raise ValueError(f"{self.node.path}: the policy of key {self.key.node.path} cannot be edited from this "
                             f"stack, so {service} could not encrypt into the queue; give the queue a key of its own")
