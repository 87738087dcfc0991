"""The per-instance tenant connection total is derived from the database's max_connections and
always fits it (docs/request-path.md, "Connection budget")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.settings import (RDS_PROXY_CONNECTION_SHARE, RDS_RESERVED_CONNECTIONS, ServiceSettings,
                               tenant_pool_budget)
from tenant_provisioner.errors import ConfigError

BASE_ENV = {"DATABASE_URL": "postgresql://svc@127.0.0.1:5432/app", "REDIS_URL": "redis://127.0.0.1:6379/0"}


def test_default_total_is_the_documented_arithmetic():
    settings = ServiceSettings.from_env(BASE_ENV)
    # (1,000 - 500 for the RDS Proxy - 3 reserved) // (3 API instances + 1 worker) - 4 control = 120
    assert (settings.database_max_connections, settings.replicas, settings.pool_total) == (1000, 3, 120)


@given(max_connections=st.integers(50, 5000), replicas=st.integers(1, 20), control=st.integers(1, 8))
def test_the_whole_database_fits_max_connections(max_connections, replicas, control):
    budget = tenant_pool_budget(max_connections=max_connections, replicas=replicas, control_pool_size=control)
    if budget < 1:
        return
    proxy = int(max_connections * RDS_PROXY_CONNECTION_SHARE)
    services = (replicas + 1) * (budget + control)  # API instances and the worker, tenant + control pools
    assert services + proxy + RDS_RESERVED_CONNECTIONS <= max_connections


def test_a_total_above_the_budget_is_refused_with_the_numbers():
    with pytest.raises(ConfigError, match="TENANT_POOL_TOTAL 121 exceeds the connection budget 120"):
        ServiceSettings.from_env({**BASE_ENV, "TENANT_POOL_TOTAL": "121"})
    assert ServiceSettings.from_env({**BASE_ENV, "TENANT_POOL_TOTAL": "40"}).pool_total == 40


def test_a_database_too_small_for_the_replicas_is_refused():
    with pytest.raises(ConfigError, match="leaves no tenant connections"):
        ServiceSettings.from_env({**BASE_ENV, "DATABASE_MAX_CONNECTIONS": "40", "SERVICE_REPLICAS": "10"})
