"""The Redis connection for the limits Lambdas from the environment CDK sets (or a URL locally).

``REDIS_URL``, else ``REDIS_HOST`` / ``REDIS_PORT`` with the AUTH token from
``REDIS_AUTH_SECRET_ARN`` over TLS (ElastiCache in-transit encryption). The token is fetched at
run time (cached 5 minutes by Powertools) and never logged. The database URL comes from
`tenant_provisioner.db.database_url_from_env`.
"""

from __future__ import annotations

import os
from typing import Mapping

import redis
from aws_lambda_powertools.utilities import parameters

from tenant_provisioner.errors import ConfigError

SECRET_MAX_AGE_S = 300
REDIS_TIMEOUT_S = 2.0


def redis_client(env: Mapping[str, str] | None = None) -> redis.Redis:
    """A client on the primary (never a replica: limiter state must not be read stale)."""
    env = os.environ if env is None else env
    if env.get("REDIS_URL"):
        return redis.Redis.from_url(env["REDIS_URL"], socket_timeout=REDIS_TIMEOUT_S,
                                    socket_connect_timeout=REDIS_TIMEOUT_S)
    host, secret_arn = env.get("REDIS_HOST"), env.get("REDIS_AUTH_SECRET_ARN")
    if not host or not secret_arn:
        raise ConfigError("no Redis: set REDIS_URL, or REDIS_HOST and REDIS_AUTH_SECRET_ARN")
    token = parameters.get_secret(secret_arn, max_age=SECRET_MAX_AGE_S)
    return redis.Redis(host=host, port=int(env.get("REDIS_PORT", "6379")), password=str(token), ssl=True,
                       socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)
