"""The quota circuit breaker as pure functions: usage in, next state and transitions out.

Per tenant and metered quantity, on the share of the tier's hard limit used this billing period
(levels from the tiers file, compared exactly with fractions, never floats):

- admitted >= warning (90 %)    -> WARNING     (notify the tenant admin and ops)
- admitted >= hard_limit (100 %) -> HARD_LIMIT  (the limiter refuses metered calls)
- attempted - baseline >= suspension (200 %) -> SUSPENDED (refused calls keep counting; the
  tenant is suspended through the lifecycle)

A level is entered at most once per (period, generation): the enforcer stores each transition
under that unique key, which is what makes notification exactly-once. Levels never go down
inside a period on their own (lost Redis counters must not lift a limit); they reset at the next
period, drop on a tier change that raises the limit, and SUSPENDED ends only when the tenant is
active again (operator resume or a paid tier change through the lifecycle), which starts a new
generation whose suspension threshold counts attempts from the resume on. A tier change that
lowers the level also starts a new generation, so a later change back (and the warning it
brings) is recorded and notified as the new event it is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import date
from fractions import Fraction

from tenant_provisioner.tiers import BreakerLevels, Tier

QUANTITIES = ("api_requests", "storage_bytes", "seats")


class Level(enum.IntEnum):
    OK = 0
    WARNING = 1
    HARD_LIMIT = 2
    SUSPENDED = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def action(self) -> str:
        """The audit action written when this level is entered."""
        return {Level.OK: "breaker.reset", Level.WARNING: "breaker.warning",
                Level.HARD_LIMIT: "breaker.hard_limit", Level.SUSPENDED: "breaker.suspension"}[self]

    @classmethod
    def parse(cls, label: str) -> "Level":
        return cls[label.upper()]


def hard_limit_of(tier: Tier, quantity: str) -> int:
    """The tier's hard limit for a metered quantity."""
    if quantity == "api_requests":
        return tier.api_requests.hard_limit
    if quantity == "storage_bytes":
        return tier.storage_bytes
    if quantity == "seats":
        return tier.seats
    raise ValueError(f"unknown metered quantity {quantity!r}; known: {', '.join(QUANTITIES)}")


@dataclass(frozen=True)
class Usage:
    """One quantity measured for one tenant in one period (attempted >= admitted)."""

    quantity: str
    admitted: int
    attempted: int
    hard_limit: int

    def share(self) -> float:
        return self.admitted / self.hard_limit if self.hard_limit else float("inf")


def _reached(value: int, level: float, hard_limit: int) -> bool:
    # The tiers file writes 0.9 / 1.0 / 2.0; as a decimal fraction 0.9 * 100 is exactly 90.
    return value >= Fraction(str(level)) * hard_limit


def measured_level(usage: Usage, levels: BreakerLevels, attempted_baseline: int = 0) -> Level:
    """The level the numbers alone call for."""
    if _reached(usage.attempted - attempted_baseline, levels.suspension, usage.hard_limit):
        return Level.SUSPENDED
    if _reached(usage.admitted, levels.hard_limit, usage.hard_limit):
        return Level.HARD_LIMIT
    if _reached(usage.admitted, levels.warning, usage.hard_limit):
        return Level.WARNING
    return Level.OK


@dataclass(frozen=True)
class BreakerState:
    level: Level
    period: date
    tier: str
    generation: int = 0
    attempted_baseline: int = 0


@dataclass(frozen=True)
class Transition:
    quantity: str
    period: date
    generation: int
    from_level: Level
    to_level: Level
    cause: str  # "usage", "new_period", "tier_change", "resumed"

    @property
    def action(self) -> str:
        return self.to_level.action if self.cause == "usage" else Level.OK.action


def step(state: BreakerState | None, usage: Usage, *, period: date, tier: str, levels: BreakerLevels,
         tenant_active: bool) -> tuple[BreakerState, list[Transition]]:
    """Next breaker state of one quantity and the transitions (0-2) that lead to it."""
    transitions: list[Transition] = []
    if state is None:
        state = BreakerState(Level.OK, period, tier)

    def move(current: BreakerState, new: BreakerState, cause: str) -> BreakerState:
        transitions.append(Transition(usage.quantity, new.period, new.generation, current.level, new.level, cause))
        return new

    if state.level is Level.SUSPENDED:
        if not tenant_active:
            return state, []  # stays out until the lifecycle makes the tenant active again
        resumed = BreakerState(Level.OK, period, tier, generation=(state.generation + 1 if state.period == period
                                                                     else 0),
                               attempted_baseline=usage.attempted)
        capped = min(measured_level(usage, levels, resumed.attempted_baseline), Level.HARD_LIMIT)
        state = move(state, replace(resumed, level=capped), "resumed")
        return state, transitions

    if state.period != period:
        fresh = BreakerState(Level.OK, period, tier)
        state = move(state, fresh, "new_period") if state.level is not Level.OK else fresh

    measured = measured_level(usage, levels, state.attempted_baseline)
    if measured > state.level:
        state = move(state, replace(state, level=measured, tier=tier), "usage")
    elif measured < state.level and state.tier != tier:
        # A new generation: should the tier go back down, re-entering a level is a new event.
        state = move(state, replace(state, level=measured, tier=tier, generation=state.generation + 1),
                     "tier_change")
    elif state.tier != tier:
        state = replace(state, tier=tier)
    return state, transitions
