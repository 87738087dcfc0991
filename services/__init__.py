"""Reference services on the tenant request path: the API (services.api) and the worker
(services.worker). Both are ordinary processes: ``python -m services.api`` / ``python -m
services.worker``; their Python dependencies are pinned in services/requirements.txt."""
