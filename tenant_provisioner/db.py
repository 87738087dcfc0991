"""Connections to the shared database, always acting as the provisioner role.

The login user (the RDS master user through its secret, the operators' `operator_login_role`
through an IAM token, or ``postgres`` locally) only has to be a member of the provisioner role
(WITH SET): every pooled connection runs ``SET ROLE <provisioner>``, so all schemas, tables and tenant roles are created by, and owned by, that one dedicated non-superuser
role, and privilege checks are the real ones even when the login user is a superuser. The role
name is configurable (``TENANT_PROVISIONER_ROLE``, `DatabaseSettings`) because roles are
cluster-wide and parallel test databases must not share one.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from tenant_provisioner.errors import ConfigError, TransientError
from tenant_provisioner.runtime import env as envvars

DEFAULT_PROVISIONER_ROLE = "tenant_provisioner"
APPLICATION_NAME = "tenant-provisioner"
# Every control-plane session waits at most this long for a lock and runs a statement at most
# this long: a tenant holding a lock on its own tables or its role (LOCK TABLE, an open ALTER ROLE)
# makes one control-plane step fail fast instead of stalling it, and the next run retries.
# Long by design (a fleet migration's ALTER, an export's COPY) but never unbounded.
CONTROL_LOCK_TIMEOUT = "5s"
CONTROL_STATEMENT_TIMEOUT = "15min"


SECRET_MAX_AGE_SECONDS = 300


def rds_secret_params(secret_arn: str, *, dbname: str | None = None, sslmode: str = "require",
                      application_name: str | None = None) -> dict[str, Any]:
    """libpq parameters from the RDS master secret, fetched at run time (cached 5 minutes by
    Powertools, so a rotated password is picked up) and never logged; TLS required by default."""
    from aws_lambda_powertools.utilities import parameters  # only Lambdas read secrets; keep CLI imports light

    secret = parameters.get_secret(secret_arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
    params: dict[str, Any] = {"host": secret["host"], "port": int(secret.get("port", 5432)),
                              "user": secret["username"], "password": secret["password"],
                              "dbname": dbname or secret.get("dbname") or "postgres", "sslmode": sslmode}
    if application_name:
        params["application_name"] = application_name
    return params


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    """The shared database: a URL locally, the RDS master secret in AWS (TLS required)."""

    provisioner_role: str = DEFAULT_PROVISIONER_ROLE   # the login user works through SET ROLE
    url: str | None = None
    secret_arn: str | None = None
    name: str | None = None                            # database in the RDS instance (default: the secret's)
    sslmode: str = "require"

    @classmethod
    def from_env(cls, env: envvars.Env | None = None) -> "DatabaseSettings":
        env = envvars.environ(env)
        settings = cls(provisioner_role=env.get("TENANT_PROVISIONER_ROLE") or DEFAULT_PROVISIONER_ROLE,
                       url=envvars.optional(env, "DATABASE_URL"),
                       secret_arn=envvars.optional(env, "DATABASE_SECRET_ARN"),
                       name=envvars.optional(env, "DATABASE_NAME"),
                       sslmode=env.get("DATABASE_SSLMODE") or "require")
        if not settings.url and not settings.secret_arn:
            raise ConfigError("no database: set DATABASE_URL or DATABASE_SECRET_ARN")
        return settings

    def to_env(self) -> dict[str, str]:
        return envvars.to_env({"DATABASE_SECRET_ARN": self.secret_arn, "DATABASE_NAME": self.name,
                               "DATABASE_SSLMODE": self.sslmode, "TENANT_PROVISIONER_ROLE": self.provisioner_role,
                               "DATABASE_URL": self.url})

    def params(self, application_name: str | None = None) -> dict[str, Any]:
        """libpq parameters; the secret is fetched at run time (cached 5 minutes), never logged."""
        if self.url:
            return conninfo_to_dict(self.url)
        assert self.secret_arn is not None
        return rds_secret_params(self.secret_arn, dbname=self.name, sslmode=self.sslmode,
                                 application_name=application_name)

    def conninfo(self, application_name: str | None = None) -> str:
        return self.url or make_conninfo(**self.params(application_name))

    def pool(self, *, max_size: int = 1, application_name: str | None = None) -> Database:
        """A connection pool acting as the provisioner role (opened on first use)."""
        return Database(self.conninfo(application_name), provisioner_role=self.provisioner_role,
                        max_size=max_size)


def tenant_group_role(provisioner_role: str) -> str:
    """The NOLOGIN group every tenant role is a member of; it holds only CONNECT on the database."""
    return f"{provisioner_role}_tenants"


def operator_login_role(provisioner_role: str) -> str:
    """The people's login (``make db-tunnel``): no password, RDS IAM authentication, may only
    ``SET ROLE`` to the provisioner (`control.init` creates it)."""
    return f"{provisioner_role}_operator"


def _missing_database(exc: psycopg.OperationalError, url: str) -> str | None:
    """What to do when the server says the database does not exist (instead of its raw FATAL)."""
    message = " ".join(str(exc).split())
    if exc.sqlstate != "3D000" and not ("database" in message and "does not exist" in message):
        return None
    name = conninfo_to_dict(url).get("dbname") or "(default)"
    return (f"database {name!r} does not exist on that server: create it first (as an admin: "
            f"CREATE DATABASE {name}; or `createdb {name}`), or point --database-url / DATABASE_URL "
            "at an existing database")


def _unavailable(exc: psycopg.OperationalError, url: str) -> TransientError:
    """A failed connection; retryable for a running service (the database may be restarting)."""
    return TransientError(_missing_database(exc, url) or f"database unavailable: {' '.join(str(exc).split())}")


class Database:
    """A small connection pool whose connections act as the provisioner role.

    ``max_size`` bounds how many connections this process opens: 1 in a Lambda (one request at a
    time), the ``--concurrency`` of a fleet migration, a few for tests.
    """

    def __init__(self, url: str, *, provisioner_role: str, max_size: int = 1, timeout: float = 30.0) -> None:
        if not url:
            raise ConfigError("no database: pass --database-url or set DATABASE_URL")
        self.url = url
        self.provisioner_role = provisioner_role
        self._timeout = timeout
        self._pool = ConnectionPool(
            url, min_size=1, max_size=max(1, max_size), open=False, timeout=timeout,
            kwargs={"application_name": APPLICATION_NAME, "connect_timeout": 10, "autocommit": True},
            configure=self._configure, name=f"provisioner-{self.provisioner_role}",
        )

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(self.provisioner_role)))
        conn.execute("SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                     (CONTROL_LOCK_TIMEOUT, CONTROL_STATEMENT_TIMEOUT))

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled autocommit connection acting as the provisioner; use ``conn.transaction()``."""
        if self._pool.closed:
            self._open()
        try:
            with self._pool.connection(timeout=self._timeout) as conn:
                yield conn
        except PoolTimeout as exc:
            raise TransientError(f"no database connection within {self._timeout:.0f}s: {exc}") from exc
        except psycopg.OperationalError as exc:
            raise TransientError(f"database unavailable: {exc}") from exc

    def _open(self) -> None:
        """Fail fast with the server's own reason instead of the pool retrying for `timeout`."""
        try:
            with psycopg.connect(self.url, connect_timeout=10, application_name=APPLICATION_NAME) as probe:
                self._configure(probe)
        except psycopg.OperationalError as exc:
            raise _unavailable(exc, self.url) from exc
        except (psycopg.errors.InvalidParameterValue, psycopg.errors.InsufficientPrivilege) as exc:
            raise ConfigError(f"cannot act as provisioner role {self.provisioner_role!r} ({str(exc).strip()}); "
                              "run `tenant-provisioner init` as the database admin first") from exc
        self._pool.open(wait=False)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def admin_connect(url: str) -> psycopg.Connection:
    """A plain connection as the login user (for `init`, which creates the provisioner role)."""
    try:
        return psycopg.connect(url, application_name=APPLICATION_NAME, connect_timeout=10, autocommit=True)
    except psycopg.OperationalError as exc:
        missing = _missing_database(exc, url)
        if missing:  # `init` is where a new database is first used: the operator's to fix (exit 2)
            raise ConfigError(missing) from exc
        raise _unavailable(exc, url) from exc

