"""``python -m services.api``: serve the tenant API on ``PORT`` (default 8000)."""

from __future__ import annotations

from services.api.app import create_app
from services.serving import serve_granian, serve_uvicorn
from services.settings import load_for_process


def build_app() -> object:
    """Factory for servers that import the app themselves (granian's worker process)."""
    return create_app(load_for_process())


def main() -> None:
    settings = load_for_process()
    if settings.server == "granian":
        serve_granian("services.api.__main__:build_app", settings)
        return
    app = create_app(settings)

    def start_draining() -> None:
        app.runtime.draining = True  # type: ignore[attr-defined]

    serve_uvicorn(app, settings, on_exit=start_draining)


if __name__ == "__main__":
    main()
