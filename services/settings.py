"""The services' settings, read once from the environment into one typed object.

Contract relied on by the Kubernetes manifests (issue 13) and the failure drills (issue 15):
``PORT`` (API, default 8000), ``HEALTH_PORT`` (worker probes, default 8001),
``SHUTDOWN_GRACE_SECONDS`` (default 20), ``DATABASE_URL``, ``REDIS_URL``, ``TIERS_FILE``,
``RATE_LIMIT_REPLICAS`` (pods sharing a tenant's rate while Redis is away, default 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from tenant_provisioner.db import DEFAULT_PROVISIONER_ROLE
from tenant_provisioner.errors import ConfigError
from tenant_provisioner.gateway.credentials import PasswordDeriver


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


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
    password_deriver: PasswordDeriver | None
    pool_total: int
    pool_per_tenant: int
    replicas: int
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
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ServiceSettings":
        env = os.environ if env is None else env
        database_url, redis_url = env.get("DATABASE_URL", ""), env.get("REDIS_URL", "")
        if not database_url:
            raise ConfigError("DATABASE_URL is required (postgresql://user@host:5432/db)")
        if not redis_url:
            raise ConfigError("REDIS_URL is required (redis://host:6379/0)")
        key = env.get("TENANT_DB_PASSWORD_KEY")
        server = env.get("SERVER", "uvicorn")
        if server not in ("uvicorn", "granian"):
            raise ConfigError(f"SERVER must be uvicorn or granian, got {server!r}")
        return cls(
            database_url=database_url, redis_url=redis_url, tiers_file=env.get("TIERS_FILE") or None,
            host=env.get("HOST", "0.0.0.0"),
            port=_int(env, "PORT", 8000, 1), health_port=_int(env, "HEALTH_PORT", 8001, 1),
            shutdown_grace_seconds=_float(env, "SHUTDOWN_GRACE_SECONDS", 20.0),
            shutdown_delay_seconds=_float(env, "SHUTDOWN_DELAY_SECONDS", 0.0),
            provisioner_role=env.get("TENANT_PROVISIONER_ROLE") or DEFAULT_PROVISIONER_ROLE,
            redis_key_prefix=env.get("REDIS_KEY_PREFIX", ""),
            redis_timeout_seconds=_float(env, "REDIS_TIMEOUT_SECONDS", 0.25, 0.001),
            password_deriver=PasswordDeriver.from_text(key, _int(env, "TENANT_DB_PASSWORD_VERSION", 1, 1))
            if key else None,
            pool_total=_int(env, "TENANT_POOL_TOTAL", 40, 1),
            pool_per_tenant=_int(env, "TENANT_POOL_PER_TENANT", 4, 1),
            replicas=_int(env, "SERVICE_REPLICAS", 3, 1),
            rate_limit_replicas=_int(env, "RATE_LIMIT_REPLICAS", 1, 1),
            pool_idle_seconds=_float(env, "TENANT_POOL_IDLE_SECONDS", 60.0, 0.1),
            pool_wait_seconds=_float(env, "TENANT_POOL_WAIT_SECONDS", 2.0, 0.0),
            control_pool_size=_int(env, "CONTROL_POOL_SIZE", 4, 1),
            key_cache_seconds=_float(env, "KEY_CACHE_SECONDS", 2.0, 0.0),
            server=server, log_level=env.get("LOG_LEVEL", "INFO").upper(),
            worker_concurrency=_int(env, "WORKER_CONCURRENCY", 4, 1),
            job_lease_seconds=_float(env, "JOB_LEASE_SECONDS", 60.0, 1.0),
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
