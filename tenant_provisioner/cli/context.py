"""What every operator command shares: the root command's database options, the environment's
settings (read once per run) and the platform the composition root builds from them."""

from __future__ import annotations

import functools
import getpass
from dataclasses import dataclass

import redis
import typer

from tenant_provisioner.db import Database
from tenant_provisioner.errors import ConfigError
from tenant_provisioner.runtime import compose
from tenant_provisioner.runtime.settings import OperatorSettings
from tenant_provisioner.secrets import AwsSecretStore


@dataclass
class Operator:
    database_url: str | None
    provisioner_role: str

    @functools.cached_property
    def settings(self) -> OperatorSettings:
        return OperatorSettings.from_env()

    def database(self, max_size: int = 1) -> Database:
        if not self.database_url:
            raise ConfigError("no database: pass --database-url or set DATABASE_URL")
        return Database(self.database_url, provisioner_role=self.provisioner_role, max_size=max_size)

    def platform(self, database: Database, *, aws_secrets: bool = False, redis_client: redis.Redis | None = None,
                 key_prefix: str = "") -> compose.Platform:
        """The lifecycle and clients for one command: tenant secrets in AWS only when asked;
        Redis given by the command, else the environment's (REDIS_URL / REDIS_HOST), else none."""
        settings = self.settings
        store = (AwsSecretStore(settings.secrets.prefix)
                 if aws_secrets else None)
        if redis_client is None:
            return compose.for_operator(settings, database=database, secret_store=store)
        return compose.wire(database=database, billing=settings.billing, stripe_client=settings.billing.client(),
                            redis_client=redis_client, key_prefix=key_prefix, secret_store=store)


def operator(ctx: typer.Context) -> Operator:
    """The root command's `Operator` (set by its callback), from any sub-command."""
    found = ctx.find_object(Operator)
    if found is None:
        raise ConfigError("internal: the operator context is missing (run through `tenant-provisioner`)")
    return found


def actor() -> str:
    return f"cli:{getpass.getuser()}"
