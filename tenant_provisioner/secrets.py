"""Per-tenant database credentials in AWS Secrets Manager, at ``<prefix>/tenants/<tenant_id>``.

The secret holds host, port, database, user, password and schema as JSON; the app team's pods
read their own tenant's secret. Values never appear in logs or results. AWS errors a retry may
fix become `TransientError`; missing credentials become `ConfigError`.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Protocol

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from tenant_provisioner.errors import ConfigError, TransientError

_NOT_FOUND = "ResourceNotFoundException"


class SecretStore(Protocol):
    """Where tenant credentials go; the Lambda and ``--secrets aws`` use `AwsSecretStore`."""

    def name_for(self, tenant_id: str) -> str: ...

    def exists(self, tenant_id: str) -> bool: ...

    def get(self, tenant_id: str) -> dict[str, Any] | None: ...

    def put(self, tenant_id: str, value: Mapping[str, Any]) -> None: ...

    def delete(self, tenant_id: str, *, recovery_days: int | None) -> None: ...


class AwsSecretStore:
    """Secrets Manager, encrypted with `kms_key_id` when given and tagged with the tenant id."""

    def __init__(self, prefix: str, *, client: Any = None, kms_key_id: str | None = None) -> None:
        if not prefix.strip("/"):
            raise ConfigError("tenant secrets prefix must not be empty (TENANT_SECRETS_PREFIX)")
        self.prefix = prefix.rstrip("/")
        self.kms_key_id = kms_key_id
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

    def exists(self, tenant_id: str) -> bool:
        """True if the secret exists and is not scheduled for deletion."""
        described = self._describe(tenant_id)
        return described is not None and "DeletedDate" not in described

    def get(self, tenant_id: str) -> dict[str, Any] | None:
        """The stored value, or None if the secret is absent or scheduled for deletion."""
        if not self.exists(tenant_id):
            return None
        value = self._call("get_secret_value", SecretId=self.name_for(tenant_id))
        return json.loads(value["SecretString"])

    def put(self, tenant_id: str, value: Mapping[str, Any]) -> None:
        """Create the secret, or restore and overwrite it (idempotent)."""
        name, body = self.name_for(tenant_id), json.dumps(dict(value))
        described = self._describe(tenant_id)
        if described is None:
            extra = {"KmsKeyId": self.kms_key_id} if self.kms_key_id else {}
            self._call("create_secret", Name=name, SecretString=body,
                       Description=f"Database credentials of tenant {tenant_id}",
                       Tags=[{"Key": "tenant", "Value": tenant_id}], **extra)
            return
        if "DeletedDate" in described:
            self._call("restore_secret", SecretId=name)
        self._call("put_secret_value", SecretId=name, SecretString=body)

    def delete(self, tenant_id: str, *, recovery_days: int | None) -> None:
        """Delete (immediately when `recovery_days` is None); absent secrets are fine."""
        described = self._describe(tenant_id)
        if described is None or ("DeletedDate" in described and recovery_days is not None):
            return
        options: dict[str, Any] = ({"ForceDeleteWithoutRecovery": True} if recovery_days is None
                                   else {"RecoveryWindowInDays": recovery_days})
        self._call("delete_secret", SecretId=self.name_for(tenant_id), **options)
