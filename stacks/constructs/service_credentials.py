"""The API's and worker's own credentials: their database login and the tenant-password key.

Two generated Secrets Manager secrets (KMS: the secrets key). The pods read them at start through
their Pod Identity roles (services/settings.py); the operator action ``init`` (Lambda
``tenant_operations``) makes the login's password the role's, and ``sync_passwords`` sets every
tenant role's password derived from the key. Rotation is an operator step (put a new value, run
the action, restart the pods: docs/runbooks/service-credentials.md), not a rotation Lambda: the
services read credentials once at start, so a silent scheduled rotation would only break them.
"""

from __future__ import annotations

import json

from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.nag import acknowledge

_NO_AUTO_ROTATION = ("Rotated by the operator runbook docs/runbooks/service-credentials.md ({what}): the "
                     "services read it once at start, so rotation is put-secret-value, the tenant_operations "
                     "action, then a rollout restart; an unattended rotation Lambda would break running pods.")


class ServiceCredentials(Construct):
    """``database_login``: JSON ``username``/``password`` of the services' LOGIN role (member of the
    gateway role only). ``password_key``: JSON ``key``/``version`` deriving tenant role passwords."""

    def __init__(self, scope: Construct, construct_id: str, *, name_prefix: str, login_name: str,
                 secrets_key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.login_name = login_name
        self.database_login = secretsmanager.Secret(
            self, "DatabaseLogin", secret_name=f"{name_prefix}/services-db-login", encryption_key=secrets_key,
            description="API/worker database login (member of the gateway role only); applied by init",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"username": login_name}), generate_string_key="password",
                password_length=48, exclude_punctuation=True, include_space=False))
        self.password_key = secretsmanager.Secret(
            self, "TenantPasswordKey", secret_name=f"{name_prefix}/tenant-password-key", encryption_key=secrets_key,
            description="Key deriving every tenant role's password (HMAC-SHA256); applied by sync_passwords",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"version": 1}), generate_string_key="key",
                password_length=64, exclude_punctuation=True, include_space=False))
        acknowledge(self.database_login.node.default_child, "AwsSolutions-SMG4",
                    _NO_AUTO_ROTATION.format(what="services login: new value, then init"))
        acknowledge(self.password_key.node.default_child, "AwsSolutions-SMG4",
                    _NO_AUTO_ROTATION.format(what="derivation key: new value with version+1, then sync_passwords"))
