"""``python -m services.worker``: run tenant jobs; probes on ``HEALTH_PORT`` (default 8001)."""

from __future__ import annotations

from services.settings import load_for_process
from services.worker.worker import run

if __name__ == "__main__":
    run(load_for_process())
