"""Settings of the restore-drill function, read once: ``from_env`` in the handler, ``to_env`` in
the stack that creates the function, so the two can never disagree on a variable."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from tenant_provisioner.db import DEFAULT_PROVISIONER_ROLE
from tenant_provisioner.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class RestoreDrillSettings:
    source_instance: str                 # RDS instance identifier to restore from
    database_secret_arn: str             # the source's master secret (login; restored copies get a one-time password)
    database_name: str                   # database holding the control and tenant schemas
    provisioner_role: str = DEFAULT_PROVISIONER_ROLE   # role that can read every tenant schema

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "RestoreDrillSettings":
        env = os.environ if env is None else env
        missing = [name for name in ("DRILL_SOURCE_INSTANCE", "DATABASE_SECRET_ARN", "DATABASE_NAME") if not env.get(name)]
        if missing:
            raise ConfigError(f"restore drill: set {', '.join(missing)}")
        return cls(source_instance=env["DRILL_SOURCE_INSTANCE"], database_secret_arn=env["DATABASE_SECRET_ARN"],
                   database_name=env["DATABASE_NAME"],
                   provisioner_role=env.get("TENANT_PROVISIONER_ROLE") or DEFAULT_PROVISIONER_ROLE)

    def to_env(self) -> dict[str, str]:
        return {"DRILL_SOURCE_INSTANCE": self.source_instance, "DATABASE_SECRET_ARN": self.database_secret_arn,
                "DATABASE_NAME": self.database_name, "TENANT_PROVISIONER_ROLE": self.provisioner_role}
