"""Load and validate `config/tiers.yaml`, the single source of truth for tiers.

Loaded once per process (``load_tiers`` is cached); ``TIERS_FILE`` points elsewhere (tests use
tiny tiers). A bad file fails at start-up with a `ConfigError` naming the file and the field.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from tenant_provisioner.errors import ConfigError, InvalidInput

DEFAULT_TIERS_FILE = Path(__file__).resolve().parent.parent / "config" / "tiers.yaml"
# Bundled Lambdas carry the file next to the package (see stacks/constructs/python_function.py).
_BUNDLED_TIERS_FILE = Path(__file__).resolve().parent / "tiers.yaml"


@dataclass(frozen=True)
class Quota:
    """A metered monthly quantity: `included` in the price, refused above `hard_limit`."""

    included: int
    hard_limit: int
    overage_usd_per_1000: float | None

    @property
    def has_overage(self) -> bool:
        return self.overage_usd_per_1000 is not None and self.hard_limit > self.included


@dataclass(frozen=True)
class Tier:
    name: str
    display_name: str
    price_usd_per_month: float
    rate_per_second: float
    burst: int
    api_requests: Quota
    storage_gb: float
    seats: int
    db_connections: int

    @property
    def storage_bytes(self) -> int:
        return int(self.storage_gb * 1024**3)


@dataclass(frozen=True)
class BreakerLevels:
    warning: float
    hard_limit: float
    suspension: float


@dataclass(frozen=True)
class TierCatalog:
    source: Path
    currency: str
    margin_min: float
    margin_max: float
    breakers: BreakerLevels
    tiers: Mapping[str, Tier]

    def get(self, name: str) -> Tier:
        """The tier called `name`, or `InvalidInput` listing the valid names."""
        try:
            return self.tiers[name]
        except (KeyError, TypeError):
            valid = ", ".join(sorted(self.tiers))
            raise InvalidInput("tier", f"unknown tier {name!r}; valid tiers: {valid}") from None

    @property
    def names(self) -> list[str]:
        return list(self.tiers)

    @property
    def role_connection_limit(self) -> int:
        """The ``CONNECTION LIMIT`` of every tenant role: the largest tier's ``db_connections``, the
        same for all, because ``pg_roles`` is readable by every tenant and a per-tier limit would
        tell each tenant's tier. A tier's own number is enforced by the services' connection pools
        and the session reaper (docs/tenants.md, threat model)."""
        return max(tier.db_connections for tier in self.tiers.values())


class _Reader:
    """Reads typed fields from nested mappings, naming the full path of a bad field."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: field '{path}': {message}")

    def mapping(self, data: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(data, Mapping):
            raise self.fail(path, "must be a mapping")
        return data

    def number(self, data: Mapping[str, Any], key: str, path: str, *, minimum: float = 0,
               integer: bool = False, allow_none: bool = False) -> Any:
        full = f"{path}.{key}" if path else key
        if key not in data:
            raise self.fail(full, "is missing")
        value = data[key]
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(full, f"must be a number, got {value!r}")
        if integer and int(value) != value:
            raise self.fail(full, f"must be a whole number, got {value!r}")
        if value < minimum:
            raise self.fail(full, f"must be >= {minimum}, got {value!r}")
        return int(value) if integer else float(value)

    def text(self, data: Mapping[str, Any], key: str, path: str) -> str:
        full = f"{path}.{key}" if path else key
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(full, "must be a non-empty string")
        return value


def _parse(raw: Any, source: Path) -> TierCatalog:
    r = _Reader(source)
    root = r.mapping(raw, "<root>")
    margin = r.mapping(root.get("margin_target"), "margin_target")
    breakers_raw = r.mapping(root.get("breakers"), "breakers")
    breakers = BreakerLevels(
        warning=r.number(breakers_raw, "warning", "breakers", minimum=0.01),
        hard_limit=r.number(breakers_raw, "hard_limit", "breakers", minimum=0.01),
        suspension=r.number(breakers_raw, "suspension", "breakers", minimum=0.01),
    )
    if not breakers.warning < breakers.hard_limit < breakers.suspension:
        raise r.fail("breakers", "levels must rise: warning < hard_limit < suspension")
    tiers_raw = r.mapping(root.get("tiers"), "tiers")
    if not tiers_raw:
        raise r.fail("tiers", "must define at least one tier")
    tiers: dict[str, Tier] = {}
    for name, body in tiers_raw.items():
        path = f"tiers.{name}"
        if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
            raise r.fail(path, "tier names must be lower-case identifiers")
        body = r.mapping(body, path)
        quota_raw = r.mapping(body.get("api_requests"), f"{path}.api_requests")
        qpath = f"{path}.api_requests"
        quota = Quota(
            included=r.number(quota_raw, "included", qpath, integer=True),
            hard_limit=r.number(quota_raw, "hard_limit", qpath, minimum=1, integer=True),
            overage_usd_per_1000=r.number(quota_raw, "overage_usd_per_1000", qpath, allow_none=True),
        )
        if quota.hard_limit < quota.included:
            raise r.fail(f"{qpath}.hard_limit", "must be >= included")
        if quota.hard_limit > quota.included and quota.overage_usd_per_1000 is None:
            raise r.fail(f"{qpath}.overage_usd_per_1000",
                         "is required when hard_limit exceeds included (usage above included is billed)")
        tiers[name] = Tier(
            name=name,
            display_name=r.text(body, "display_name", path),
            price_usd_per_month=r.number(body, "price_usd_per_month", path),
            rate_per_second=r.number(body, "rate_per_second", path, minimum=0.001),
            burst=r.number(body, "burst", path, minimum=1, integer=True),
            api_requests=quota,
            storage_gb=r.number(body, "storage_gb", path, minimum=0.001),
            seats=r.number(body, "seats", path, minimum=1, integer=True),
            db_connections=r.number(body, "db_connections", path, minimum=1, integer=True),
        )
    return TierCatalog(
        source=source,
        currency=r.text(root, "currency", ""),
        margin_min=r.number(margin, "min", "margin_target"),
        margin_max=r.number(margin, "max", "margin_target"),
        breakers=breakers,
        tiers=tiers,
    )


@dataclass(frozen=True, kw_only=True)
class TiersSettings:
    """Which tiers file this process reads: ``TIERS_FILE`` (tiny tiers in tests, an operator trying a
    change) or the repo's file, else the copy bundled into a Lambda."""

    file: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "TiersSettings":
        env = os.environ if env is None else env
        override = env.get("TIERS_FILE")
        return cls(file=Path(override) if override else None)

    @property
    def path(self) -> Path:
        if self.file is not None:
            return self.file
        return DEFAULT_TIERS_FILE if DEFAULT_TIERS_FILE.exists() else _BUNDLED_TIERS_FILE


@functools.lru_cache(maxsize=8)
def _load_cached(path: Path) -> TierCatalog:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"tiers file not found: {path} (set TIERS_FILE or restore config/tiers.yaml)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return _parse(raw, path)


def load_tiers(path: Path | str | None = None) -> TierCatalog:
    """The validated tier catalog (cached per path)."""
    return _load_cached(Path(path) if path else TiersSettings.from_env().path)
