"""``python -m services.api``: serve the tenant API on ``PORT`` (default 8000)."""

from __future__ import annotations

import sys

from services import logs
from services.api.app import create_app
from services.serving import serve_granian, serve_uvicorn
from services.settings import ServiceSettings
from tenant_provisioner.errors import PlatformError


def build_app() -> object:
    """Factory for servers that import the app themselves (granian)."""
    settings = ServiceSettings.from_env()
    logs.configure(settings.log_level)
    return create_app(settings)


def main() -> int:
    try:
        settings = ServiceSettings.from_env()
    except PlatformError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    if settings.server == "granian":
        serve_granian("services.api.__main__:build_app", settings)
        return 0
    app = create_app(settings)

    def start_draining() -> None:
        app.runtime.draining = True  # type: ignore[attr-defined]

    serve_uvicorn(app, settings, on_exit=start_draining)
    return 0


if __name__ == "__main__":
    sys.exit(main())
