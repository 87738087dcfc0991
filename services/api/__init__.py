"""The reference tenant API: ``python -m services.api`` (docs/request-path.md)."""
