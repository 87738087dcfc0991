"""Restore-drill Lambda: one step of the drill per invocation, driven by the Step Functions state
machine of ``stacks/dr_stack.py`` (steps: ``tenant_provisioner/drills/restore.py``).

Event: ``{"action": "<step>", "state": {...}}`` (``capture`` needs no state), plus ``"error"``
on the failure path. Returns the new
state (``restorable`` and ``status`` return ``{"restorable": bool}`` / ``{"status": str}``).
A failing step raises; the state machine then still runs ``cleanup`` and ``report`` with the
error in the state, so the temporary instance is deleted and Verified = 0 is published.
"""

from __future__ import annotations

from typing import Any

import boto3
import psycopg
from aws_lambda_powertools import Logger
from psycopg import sql

from tenant_provisioner.db import Database, DatabaseSettings
from tenant_provisioner.drills.restore import RestoreDrill
from tenant_provisioner.drills.settings import RestoreDrillSettings
from tenant_provisioner.errors import InvalidInput

logger = Logger()
# Built on the first invocation and reused by warm ones.
_settings: RestoreDrillSettings | None = None
_drill: RestoreDrill | None = None


def _runtime() -> tuple[RestoreDrillSettings, RestoreDrill]:
    global _settings, _drill
    if _settings is None or _drill is None:
        _settings = RestoreDrillSettings.from_env()
        _drill = RestoreDrill(rds=boto3.client("rds"), cloudwatch=boto3.client("cloudwatch"),
                              source=_settings.source_instance)
    return _settings, _drill


def _source(settings: RestoreDrillSettings) -> Database:
    return DatabaseSettings(provisioner_role=settings.provisioner_role, secret_arn=settings.database_secret_arn,
                            name=settings.database_name).pool(application_name="restore-drill")


def _restored_connector(settings: RestoreDrillSettings):
    def connect(*, host: str, port: int, user: str, password: str) -> psycopg.Connection:
        """The restored copy, over TLS (its parameter group forces it), acting as the provisioner role."""
        conn = psycopg.connect(host=host, port=port, user=user, password=password, dbname=settings.database_name,
                               sslmode="require", connect_timeout=15, autocommit=True,
                               application_name="restore-drill")
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(settings.provisioner_role)))
        return conn
    return connect


STEPS = ("capture", "restorable", "start_restore", "status", "verify", "cleanup", "report")


def _step(action: str, state: dict[str, Any]) -> dict[str, Any]:
    if action not in STEPS:
        raise InvalidInput("action", f"unknown restore-drill step {action!r}; one of {', '.join(STEPS)}")
    settings, drill = _runtime()
    if action == "restorable":
        return {"restorable": drill.restorable(state)}
    if action == "start_restore":
        return drill.start_restore(state)
    if action == "status":
        return {"status": drill.status(state)}
    if action == "cleanup":
        return drill.cleanup(state)
    with _source(settings) as db, db.connection() as conn:
        if action == "capture":
            return drill.capture(conn)
        if action == "verify":
            return drill.verify(state, conn, _restored_connector(settings))
        return drill.report(state, conn)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    action = event.get("action")
    if not isinstance(action, str):
        raise InvalidInput("action", f"missing: one of {', '.join(STEPS)}")
    state = dict(event.get("state") or {})
    if event.get("error"):   # the failure path: the step that failed, for the report
        state["error"] = str(event["error"])[:2000]
    result = _step(action, state)
    logger.info("restore drill step done", extra={"action": action, "result": {
        k: v for k, v in result.items() if k != "comparison"}})
    return result
