"""``python -m services.worker``: run tenant jobs; probes on ``HEALTH_PORT`` (default 8001)."""

from __future__ import annotations

import sys

from services import logs
from services.settings import ServiceSettings
from services.worker.worker import run
from tenant_provisioner.errors import PlatformError


def main() -> int:
    try:
        settings = ServiceSettings.from_env()
    except PlatformError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    run(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
