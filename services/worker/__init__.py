"""The reference tenant worker: ``python -m services.worker`` (docs/request-path.md)."""
