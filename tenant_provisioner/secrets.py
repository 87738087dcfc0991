"""Per-tenant secrets in AWS Secrets Manager, at ``<prefix>/tenants/<tenant_id>``: what is left of them.

Provisioning wrote one per tenant (host, port, database, user, password, schema) until tenant
passwords were derived from one key (gateway/credentials.py, docs/request-path.md); nothing reads
or writes them now. Offboarding deletes the secret of a tenant provisioned before that, if it has
one. AWS errors a retry may fix become `TransientError`; missing credentials become `ConfigError`.
"""

from __future__ import annotations

from typing import Any, Protocol

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from tenant_provisioner.errors import ConfigError, TransientError

_NOT_FOUND = "ResourceNotFoundException"


class SecretStore(Protocol):
    """Where legacy tenant secrets are deleted; the Lambda and ``--secrets aws`` use `AwsSecretStore`."""

    def name_for(self, tenant_id: str) -> str: ...

    def delete(self, tenant_id: str, *, recovery_days: int | None) -> None: ...


class AwsSecretStore:
    """Secrets Manager under `prefix`."""

    def __init__(self, prefix: str, *, client: Any = None) -> None:
        if not prefix.strip("/"):
            raise ConfigError("tenant secrets prefix must not be empty (TENANT_SECRETS_PREFIX)")
        self.prefix = prefix.rstrip("/")
        self._client = client or boto3.client("secretsmanager")

    def name_for(self, tenant_id: str) -> str:
        return f"{self.prefix}/tenants/{tenant_id}"

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self._client, operation)(**kwargs)
        except NoCredentialsError as exc:
            raise ConfigError(f"no AWS credentials for Secrets Manager ({operation}): {exc}") from exc
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == _NOT_FOUND:
                raise
            raise TransientError(f"Secrets Manager {operation} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"Secrets Manager {operation} failed: {exc}") from exc

    def _describe(self, tenant_id: str) -> dict[str, Any] | None:
        try:
            return self._call("describe_secret", SecretId=self.name_for(tenant_id))
        except ClientError:
            return None

    def delete(self, tenant_id: str, *, recovery_days: int | None) -> None:
        """Delete (immediately when `recovery_days` is None); absent secrets are fine."""
        described = self._describe(tenant_id)
        if described is None or ("DeletedDate" in described and recovery_days is not None):
            return
        options: dict[str, Any] = ({"ForceDeleteWithoutRecovery": True} if recovery_days is None
                                   else {"RecoveryWindowInDays": recovery_days})
        self._call("delete_secret", SecretId=self.name_for(tenant_id), **options)
