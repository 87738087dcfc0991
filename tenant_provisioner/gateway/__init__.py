"""The tenant request path shared by every service: API keys, tenant database sessions, the ASGI
tenant middleware and the tenant job queue (docs/request-path.md)."""
