"""Versioned SQL migrations shipped with the package: ``control/`` and ``tenant/``.

A migration is a file ``NNNN_<name>.sql`` (four digits, no gaps required, no duplicates). Files
are sent to PostgreSQL whole, as one batch inside the caller's transaction, so a file needs no
statement splitting and either applies completely or not at all. An applied file must never be
edited: its SHA-256 is recorded and `init` refuses to run when it changed (add a new file instead).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from tenant_provisioner.errors import ConfigError

MIGRATIONS_DIR = Path(__file__).resolve().parent
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@functools.lru_cache(maxsize=4)
def load(kind: str) -> tuple[Migration, ...]:
    """The migrations of `kind` ("control" or "tenant"), ordered by version."""
    directory = MIGRATIONS_DIR / kind
    if not directory.is_dir():
        raise ConfigError(f"no migrations directory {directory}")
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE_NAME.match(path.name)
        if not match:
            raise ConfigError(f"{path}: migration files must be named NNNN_<lower_snake_name>.sql")
        version = int(match.group(1))
        if version == 0 or version in found:
            raise ConfigError(f"{path}: version {version} is zero or used twice")
        found[version] = Migration(version, match.group(2), path.read_text())
    return tuple(found[v] for v in sorted(found))


def latest_version(kind: str) -> int:
    migrations = load(kind)
    return migrations[-1].version if migrations else 0
