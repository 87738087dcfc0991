"""The breaker state machine: exact boundaries and exactly-once transitions (property-based)."""

from __future__ import annotations

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tenant_provisioner.limits.breakers import BreakerState, Level, Usage, measured_level, step
from tenant_provisioner.tiers import BreakerLevels

LEVELS = BreakerLevels(warning=0.9, hard_limit=1.0, suspension=2.0)
NOV, DEC = date(2026, 11, 1), date(2026, 12, 1)
hard_limits = st.integers(min_value=1, max_value=10**9)


def _usage(admitted: int, attempted: int, hard: int) -> Usage:
    return Usage("api_requests", admitted, max(admitted, attempted), hard)


@given(hard=hard_limits, admitted=st.integers(min_value=0, max_value=3 * 10**9),
       extra=st.integers(min_value=0, max_value=3 * 10**9))
def test_measured_level_matches_integer_arithmetic(hard, admitted, extra):
    attempted = admitted + extra
    expected = (Level.SUSPENDED if attempted * 10 >= 20 * hard else
                Level.HARD_LIMIT if admitted >= hard else
                Level.WARNING if admitted * 10 >= 9 * hard else Level.OK)
    assert measured_level(_usage(admitted, attempted, hard), LEVELS) is expected


@given(hard=hard_limits)
def test_exact_boundaries(hard):
    warn_at = -(-9 * hard // 10)  # ceil(0.9 * hard) in integers
    assert measured_level(_usage(warn_at - 1, warn_at - 1, hard), LEVELS) is Level.OK
    assert measured_level(_usage(warn_at, warn_at, hard), LEVELS) is (Level.WARNING if warn_at < hard
                                                                     else Level.HARD_LIMIT)
    assert measured_level(_usage(hard - 1, hard - 1, hard), LEVELS) <= Level.WARNING
    assert measured_level(_usage(hard, hard, hard), LEVELS) is Level.HARD_LIMIT
    assert measured_level(_usage(hard, 2 * hard - 1, hard), LEVELS) is Level.HARD_LIMIT
    assert measured_level(_usage(hard, 2 * hard, hard), LEVELS) is Level.SUSPENDED


def test_ninety_percent_is_not_a_float_accident():
    # 0.9 * 100 == 90.00000000000001 in floats: 90 of 100 must still be a warning.
    assert measured_level(_usage(90, 90, 100), LEVELS) is Level.WARNING


@settings(max_examples=300)
@given(hard=st.integers(min_value=1, max_value=1000),
       steps=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 400)), min_size=1, max_size=40))
def test_growing_usage_enters_each_level_once_and_in_order(hard, steps):
    state, seen = None, []
    admitted = attempted = 0
    for add_admitted, add_refused in steps:
        admitted = min(hard, admitted + add_admitted)
        attempted += add_admitted + add_refused
        state, transitions = step(state, _usage(admitted, attempted, hard), period=NOV, tier="starter",
                                  levels=LEVELS, tenant_active=state is None or state.level < Level.SUSPENDED)
        seen += transitions
    levels = [t.to_level for t in seen]
    assert levels == sorted(set(levels))  # strictly rising: each level at most once
    assert all(t.cause == "usage" and t.from_level < t.to_level for t in seen)
    assert state.level is measured_level(_usage(admitted, attempted, hard), LEVELS)
    # running the enforcer again with the same numbers changes nothing
    again, none = step(state, _usage(admitted, attempted, hard), period=NOV, tier="starter", levels=LEVELS,
                       tenant_active=state.level < Level.SUSPENDED)
    assert again == state and none == []


def test_new_period_resets_once_but_suspension_waits_for_resume():
    hard_state = BreakerState(Level.HARD_LIMIT, NOV, "starter")
    state, transitions = step(hard_state, _usage(0, 0, 100), period=DEC, tier="starter", levels=LEVELS,
                              tenant_active=True)
    assert state == BreakerState(Level.OK, DEC, "starter")
    assert [(t.cause, t.action) for t in transitions] == [("new_period", "breaker.reset")]

    suspended = BreakerState(Level.SUSPENDED, NOV, "starter")
    assert step(suspended, _usage(0, 0, 100), period=DEC, tier="starter", levels=LEVELS,
                tenant_active=False) == (suspended, [])


def test_resume_starts_a_generation_counting_attempts_from_the_resume():
    suspended = BreakerState(Level.SUSPENDED, NOV, "starter")
    state, transitions = step(suspended, _usage(100, 200, 100), period=NOV, tier="starter", levels=LEVELS,
                              tenant_active=True)
    assert (state.level, state.generation, state.attempted_baseline) == (Level.HARD_LIMIT, 1, 200)
    assert [(t.cause, t.action, t.generation) for t in transitions] == [("resumed", "breaker.reset", 1)]
    state, transitions = step(state, _usage(100, 399, 100), period=NOV, tier="starter", levels=LEVELS,
                              tenant_active=True)
    assert transitions == []
    state, transitions = step(state, _usage(100, 400, 100), period=NOV, tier="starter", levels=LEVELS,
                              tenant_active=True)
    assert [(t.to_level, t.generation) for t in transitions] == [(Level.SUSPENDED, 1)]


def test_tier_change_lifts_a_hard_limit_but_lost_counters_do_not():
    hard = BreakerState(Level.HARD_LIMIT, NOV, "starter")
    same_tier, none = step(hard, _usage(5, 5, 100), period=NOV, tier="starter", levels=LEVELS, tenant_active=True)
    assert same_tier == hard and none == []
    upgraded, transitions = step(hard, _usage(100, 100, 2000), period=NOV, tier="pro", levels=LEVELS,
                                 tenant_active=True)
    assert (upgraded.level, upgraded.tier) == (Level.OK, "pro")
    assert [(t.cause, t.action) for t in transitions] == [("tier_change", "breaker.reset")]


def test_warning_again_after_a_tier_round_trip_is_a_new_event():
    """90 % on a small tier, up to a large tier (level drops), back down: the warning comes back
    as a new, separately keyed transition (found by the state machine below)."""
    warned, _ = step(None, _usage(90, 90, 100), period=NOV, tier="small", levels=LEVELS, tenant_active=True)
    upgraded, down = step(warned, _usage(90, 90, 1000), period=NOV, tier="large", levels=LEVELS,
                          tenant_active=True)
    back, again = step(upgraded, _usage(90, 90, 100), period=NOV, tier="small", levels=LEVELS, tenant_active=True)
    assert [(t.to_level, t.cause) for t in down + again] == [(Level.OK, "tier_change"), (Level.WARNING, "usage")]
    assert again[0].generation == down[0].generation == warned.generation + 1
    assert back.level is Level.WARNING


class BreakerLifecycle(RuleBasedStateMachine):
    """Random months of usage, suspensions, resumes and tier changes against `step`, as the
    enforcer drives it: every transition is unique under the enforcer's key, and the breaker and
    the tenant's lifecycle state never disagree."""

    LIMITS = {"small": 100, "large": 1000}

    def __init__(self) -> None:
        super().__init__()
        self.period, self.tier, self.active = NOV, "small", True
        self.admitted = self.attempted = 0
        self.state: BreakerState | None = None
        self.keys: set[tuple] = set()

    def _enforce(self) -> None:
        usage = Usage("api_requests", self.admitted, self.attempted, self.LIMITS[self.tier])
        before = self.state
        self.state, transitions = step(self.state, usage, period=self.period, tier=self.tier, levels=LEVELS,
                                       tenant_active=self.active)
        for t in transitions:
            key = (t.period, t.generation, t.to_level, t.cause)
            assert key not in self.keys, f"transition recorded twice: {key}"
            self.keys.add(key)
            if t.cause == "usage":
                assert before is None or t.to_level > before.level or before.period != self.period
            if t.to_level is Level.SUSPENDED:
                self.active = False  # the enforcer suspends through the lifecycle

    @rule(admitted=st.integers(0, 300), refused=st.integers(0, 600))
    def traffic(self, admitted, refused):
        room = max(0, self.LIMITS[self.tier] - self.admitted) if self.active else 0
        self.admitted += min(admitted, room)
        self.attempted += min(admitted, room) + (refused if self.active else 0)
        self._enforce()

    @rule()
    def next_month(self):
        self.period = date(self.period.year + self.period.month // 12, self.period.month % 12 + 1, 1)
        self.admitted = self.attempted = 0
        self._enforce()

    @rule()
    def operator_resumes(self):
        self.active = True
        self._enforce()

    @rule(tier=st.sampled_from(["small", "large"]))
    def tier_change(self, tier):
        self.tier = tier
        self._enforce()

    @invariant()
    def breaker_and_lifecycle_agree(self):
        if self.state is not None:
            assert (self.state.level is Level.SUSPENDED) == (not self.active)


TestBreakerLifecycle = BreakerLifecycle.TestCase
TestBreakerLifecycle.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
