"""The services' settings, read once from the environment into one typed object.

Contract relied on by the Kubernetes manifests (issue 13) and the failure drills (issue 15):
``PORT`` (API, default 8000), ``HEALTH_PORT`` (worker probes, default 8001),
``SHUTDOWN_GRACE_SECONDS`` (default 20), ``DATABASE_URL``, ``REDIS_URL``, ``TIERS_FILE``,
``RATE_LIMIT_REPLICAS`` (pods sharing a tenant's rate while Redis is away, default 1).

Credentials come inline (local runs, tests, load tests, drills: user/password in ``DATABASE_URL``,
the AUTH token in ``REDIS_URL``, ``TENANT_DB_PASSWORD_KEY``) or, on EKS, from Secrets Manager with the
pod's Pod Identity credentials, read ONCE here at process start: ``DATABASE_SECRET_ARN`` (JSON
``username``/``password`` of the services' login, added to the endpoint-only ``DATABASE_URL``),
``CACHE_AUTH_SECRET_ARN`` (the cache AUTH token, added to ``REDIS_URL``),
``TENANT_DB_PASSWORD_KEY_SECRET_ARN`` (JSON ``key``/``version`` of the tenant-password key). A secret
named but unreadable stops the process with one line saying which and why (docs/kubernetes.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable, Mapping
from urllib.parse import quote, urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tenant_provisioner.db import DEFAULT_PROVISIONER_ROLE
from tenant_provisioner.errors import ConfigError
from tenant_provisioner.gateway.credentials import PasswordDeriver
from tenant_provisioner.runtime import env as envvars

# The connection budget (docs/request-path.md, "Connection budget"): the RDS Proxy may take this share
# of max_connections for the Lambdas (its max_connections_percent), RDS keeps a few for rdsadmin.
RDS_PROXY_CONNECTION_SHARE = 0.5
RDS_RESERVED_CONNECTIONS = 3


def tenant_pool_budget(*, max_connections: int, replicas: int, worker_replicas: int, control_pool_size: int) -> int:
    """The per-instance tenant connection total the database can afford: what the RDS Proxy and
    RDS's reserved slots leave, shared by `replicas` API instances plus `worker_replicas` workers,
    each of which also holds its control pool. Derived, so it follows the instance class and the
    replica counts (the manifests set both to the autoscalers' maximums, k8s/chart.py)."""
    services = max_connections - int(max_connections * RDS_PROXY_CONNECTION_SHARE) - RDS_RESERVED_CONNECTIONS
    return services // (replicas + worker_replicas) - control_pool_size


# ARN -> SecretString; `aws_secret_reader` in production, a stand-in in tests.
SecretReader = Callable[[str], str]
SECRET_ARN_VARIABLES = ("DATABASE_SECRET_ARN", "CACHE_AUTH_SECRET_ARN", "TENANT_DB_PASSWORD_KEY_SECRET_ARN")


def aws_secret_reader(region: str | None) -> SecretReader:
    """Reads secrets with the process's AWS credentials (on EKS: the pod's Pod Identity role)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("secretsmanager", region_name=region)

    def read(arn: str) -> str:
        try:
            value = client.get_secret_value(SecretId=arn)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise ConfigError(f"cannot read secret {arn}: {code}: check it exists and the pod's role "
                              "(Pod Identity, stacks/cluster_stack.py) may read it and decrypt its key") from None
        except BotoCoreError as exc:
            raise ConfigError(f"cannot read secret {arn}: {exc}") from None
        if "SecretString" not in value:
            raise ConfigError(f"secret {arn} holds no text value")
        return value["SecretString"]
    return read


def _secret_json(read: SecretReader, arn: str, *fields: str) -> dict[str, object]:
    try:
        data = json.loads(read(arn))
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or any(data.get(f) in (None, "") for f in fields):
        raise ConfigError(f"secret {arn} must be a JSON object with {', '.join(fields)}")
    return data


def _database_url(env: Mapping[str, str], read: SecretReader | None) -> str:
    url, arn = env.get("DATABASE_URL", ""), env.get("DATABASE_SECRET_ARN")
    if not url:
        raise ConfigError("DATABASE_URL is required (postgresql://user@host:5432/db)")
    if not arn:
        return url
    login = _secret_json(read, arn, "username", "password")
    params = conninfo_to_dict(url)
    params.update(user=str(login["username"]), password=str(login["password"]))
    return make_conninfo(**params)


def _redis_url(env: Mapping[str, str], read: SecretReader | None) -> str:
    url, arn = env.get("REDIS_URL", ""), env.get("CACHE_AUTH_SECRET_ARN")
    if not url:
        raise ConfigError("REDIS_URL is required (redis://host:6379/0)")
    if not arn:
        return url
    token = read(arn).strip()
    if not token:
        raise ConfigError(f"secret {arn} (cache AUTH token) is empty")
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f":{quote(token, safe='')}@{host}"))


def _password_deriver(env: Mapping[str, str], read: SecretReader | None) -> PasswordDeriver | None:
    arn = env.get("TENANT_DB_PASSWORD_KEY_SECRET_ARN")
    if arn:
        data = _secret_json(read, arn, "key")
        try:
            version = int(data.get("version", 1))
        except (TypeError, ValueError):
            raise ConfigError(f"secret {arn}: version must be a whole number") from None
        return PasswordDeriver.from_text(str(data["key"]), version)
    key = env.get("TENANT_DB_PASSWORD_KEY")
    if not key:
        return None
    return PasswordDeriver.from_text(key, envvars.whole_number(env, "TENANT_DB_PASSWORD_VERSION", 1, 1))


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    database_url: str
    redis_url: str
    tiers_file: str | None
    host: str
    port: int
    health_port: int
    shutdown_grace_seconds: float
    shutdown_delay_seconds: float
    provisioner_role: str
    redis_key_prefix: str
    redis_timeout_seconds: float
    readiness_timeout_seconds: float
    password_deriver: PasswordDeriver | None
    database_max_connections: int
    pool_total: int
    pool_per_tenant: int | None
    replicas: int
    worker_replicas: int
    rate_limit_replicas: int
    pool_idle_seconds: float
    pool_wait_seconds: float
    control_pool_size: int
    key_cache_seconds: float
    server: str
    log_level: str
    worker_concurrency: int
    job_lease_seconds: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *,
                 read_secret: SecretReader | None = None) -> "ServiceSettings":
        """``read_secret`` defaults to Secrets Manager, used only when a ``*_SECRET_ARN`` is set."""
        env = os.environ if env is None else env
        if read_secret is None and any(env.get(name) for name in SECRET_ARN_VARIABLES):
            read_secret = aws_secret_reader(env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None)
        database_url, redis_url = _database_url(env, read_secret), _redis_url(env, read_secret)
        password_deriver = _password_deriver(env, read_secret)
        server = env.get("SERVER", "uvicorn")
        if server not in ("uvicorn", "granian"):
            raise ConfigError(f"SERVER must be uvicorn or granian, got {server!r}")
        max_connections = envvars.whole_number(env, "DATABASE_MAX_CONNECTIONS", 1000, 1)
        replicas = envvars.whole_number(env, "SERVICE_REPLICAS", 3, 1)
        worker_replicas = envvars.whole_number(env, "WORKER_REPLICAS", 1, 1)
        control_pool_size = envvars.whole_number(env, "CONTROL_POOL_SIZE", 4, 1)
        budget = tenant_pool_budget(max_connections=max_connections, replicas=replicas,
                                    worker_replicas=worker_replicas, control_pool_size=control_pool_size)
        if budget < 1:
            raise ConfigError(f"DATABASE_MAX_CONNECTIONS {max_connections} leaves no tenant connections for "
                              f"SERVICE_REPLICAS {replicas} + WORKER_REPLICAS {worker_replicas}: use a larger RDS instance class "
                              "or fewer replicas")
        pool_total = envvars.whole_number(env, "TENANT_POOL_TOTAL", budget, 1)
        if pool_total > budget:
            raise ConfigError(f"TENANT_POOL_TOTAL {pool_total} exceeds the connection budget {budget} per instance "
                              f"(DATABASE_MAX_CONNECTIONS {max_connections}, SERVICE_REPLICAS {replicas}, WORKER_REPLICAS {worker_replicas}, "
                              f"CONTROL_POOL_SIZE {control_pool_size}; docs/request-path.md): lower it or leave it unset")
        return cls(
            database_url=database_url, redis_url=redis_url, tiers_file=env.get("TIERS_FILE") or None,
            host=env.get("HOST", "0.0.0.0"),
            port=envvars.whole_number(env, "PORT", 8000, 1),
            health_port=envvars.whole_number(env, "HEALTH_PORT", 8001, 1),
            shutdown_grace_seconds=envvars.number(env, "SHUTDOWN_GRACE_SECONDS", 20.0, 0.0),
            shutdown_delay_seconds=envvars.number(env, "SHUTDOWN_DELAY_SECONDS", 0.0, 0.0),
            provisioner_role=env.get("TENANT_PROVISIONER_ROLE") or DEFAULT_PROVISIONER_ROLE,
            redis_key_prefix=env.get("REDIS_KEY_PREFIX", ""),
            redis_timeout_seconds=envvars.number(env, "REDIS_TIMEOUT_SECONDS", 0.25, 0.001),
            readiness_timeout_seconds=envvars.number(env, "READINESS_TIMEOUT_SECONDS", 1.5, 0.001),
            password_deriver=password_deriver,
            database_max_connections=max_connections,
            pool_total=pool_total,
            # unset: the tier's share
            pool_per_tenant=envvars.whole_number(env, "TENANT_POOL_PER_TENANT", 0, 1) or None,
            replicas=replicas,
            worker_replicas=worker_replicas,
            rate_limit_replicas=envvars.whole_number(env, "RATE_LIMIT_REPLICAS", 1, 1),
            pool_idle_seconds=envvars.number(env, "TENANT_POOL_IDLE_SECONDS", 60.0, 0.1),
            pool_wait_seconds=envvars.number(env, "TENANT_POOL_WAIT_SECONDS", 2.0, 0.0),
            control_pool_size=control_pool_size,
            key_cache_seconds=envvars.number(env, "KEY_CACHE_SECONDS", 2.0, 0.0),
            server=server, log_level=env.get("LOG_LEVEL", "INFO").upper(),
            worker_concurrency=envvars.whole_number(env, "WORKER_CONCURRENCY", 4, 1),
            job_lease_seconds=envvars.number(env, "JOB_LEASE_SECONDS", 60.0, 1.0),
        )


def load_for_process() -> ServiceSettings:
    """Settings for a service's main: a bad setting exits 2 with one line; JSON logs configured."""
    import sys

    from services import logs

    try:
        settings = ServiceSettings.from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.configure(settings.log_level)
    return settings
