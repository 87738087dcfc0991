"""Drill fixtures: the tenant tests' initialised throwaway database (one per test)."""

from tests.tenants.conftest import fresh_tenant_db  # noqa: F401 - re-exported fixture
