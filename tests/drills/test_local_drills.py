"""The local failure drills (`make drills`): the short version of each runs here for real —
throwaway PostgreSQL/Redis, the API and worker as processes, a locust load — and must hold its
invariants; the invariant checks themselves are shown to fail on bad runs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from drills.__main__ import main, render
from drills.platform import SHORT, LoadRun
from drills.scenarios import (DRILLS, PROBES_WHILE_AWAY, DrillResult, _admitted_against_limit, _away_long_enough,
                              _baseline, _not_ready_while_away, _unaffected)
from tenant_provisioner.drills.interruption import Probe, Sample
from tenant_provisioner.tiers import load_tiers


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DRILLS))
def test_the_short_drill_holds_its_invariants_and_prints_its_figures(name, capsys, tmp_path):
    code = main(["--short", name, "--json", str(tmp_path / "out.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"== {name}:" in out and "data lost: 0" in out and "BROKEN" not in out
    assert "time to detect" in out and "1/1 drills passed" in out


def _run(*samples: tuple[float, object, str]) -> LoadRun:
    return LoadRun(samples=[{"at": at, "status": status, "name": "GET /v1/projects", "tenant": tenant}
                            for at, status, tenant in samples])


PLATFORM = SimpleNamespace(catalog=load_tiers(), timing=SHORT)


def test_over_admission_during_an_outage_breaks_the_invariant():
    starter = PLATFORM.catalog.tiers["starter"]
    allowed = int(starter.rate_per_second * 2 + starter.burst)
    within = _run(*[(10.0 + i / 100, 200, "drill-starter-a") for i in range(allowed)])
    above = _run(*[(10.0 + i / 100, 200, "drill-starter-a") for i in range(allowed + 1)])
    assert _admitted_against_limit(PLATFORM, within, 10.0, 12.0) == [(False, f"drill-starter-a {allowed}/{allowed}")]
    assert _admitted_against_limit(PLATFORM, above, 10.0, 12.0)[0][0] is True


def test_a_load_that_was_never_served_makes_the_drill_fail():
    result = DrillResult("x", "x", {}, 0)
    _baseline(result, _run(*[(i / 10, 401, "drill-pro-a") for i in range(100)]), fault_at=50.0)
    assert not result.ok and "0 admitted" in result.invariants[0][2] and "'401': 100" in result.invariants[0][2]


def test_failures_after_an_unrelated_fault_break_the_invariant():
    before = [(i / 10, 200, "drill-pro-a") for i in range(100)]
    result = DrillResult("x", "x", {}, 0)
    _unaffected(result, _run(*before, *[(20 + i / 10, 503, "drill-pro-a") for i in range(10)],
                             *[(30 + i / 10, 200, "drill-pro-a") for i in range(90)]), 20.0, "x")
    assert not result.ok and "10.00% after" in result.invariants[0][2]


def test_tenants_are_normal_again_only_once_failures_fall_back_to_the_baseline():
    from drills.scenarios import _clients_recovered
    back = 100.0
    healthy = [Sample(back + second + i / 10, 200) for second in range(3, 8) for i in range(10)]
    failing = [Sample(back + second + i / 10, 503) for second in range(0, 3) for i in range(10)]
    assert _clients_recovered(failing + healthy, back, baseline=0.0) == 3.0
    assert _clients_recovered(healthy + [Sample(back + 7.5, 503)] * 5, back, baseline=0.0) is None


def _readiness(*samples: tuple[float, object]) -> DrillResult:
    """The PostgreSQL drill's readiness invariant over probes sent at these times, down at 10, back at 20."""
    probe = Probe(base_url="http://127.0.0.1:1", timeout=2.0, samples=[Sample(at, status) for at, status in samples])
    result = DrillResult("x", "x", {}, 0)
    _not_ready_while_away(result, probe, down=10.0, back=20.0)
    return result


def test_readiness_while_postgres_is_away_is_503_or_timeout_never_200():
    assert _readiness((11.0, 503), (12.0, "timeout"), (13.0, 503)).ok
    assert _readiness((11.0, 503), (19.0, 200)).ok          # sent in the last probe timeout: answered after the return
    broken = _readiness((11.0, 503), (12.0, 200))
    assert not broken.ok and "{'503': 1, '200': 1}" in broken.invariants[0][2]


def test_a_readiness_window_without_probes_is_not_measured_and_fails():
    result = _readiness((9.0, 200), (18.5, 200), (21.0, 200))
    assert not result.ok and result.invariants[0][2].startswith("not measured: no probe was sent in the 8.0 s")


@pytest.mark.parametrize("workers", [1, 2, 3, 4])
def test_postgres_stays_away_long_enough_for_the_readiness_window_to_hold_its_probes(workers):
    """Worst case: every probe waits out its timeout; whatever the workers' phase, the window read
    (the stop to one timeout before the return) holds at least PROBES_WHILE_AWAY probes."""
    probe = Probe(base_url="http://127.0.0.1:1", workers=workers, interval=0.1, timeout=2.0)
    down, back = 100.0, 100.0 + _away_long_enough(probe)
    period = probe.timeout + probe.interval
    for phase in range(21):
        sent = [down - 5 + (worker * 0.37 + phase / 10) % period + k * period
                for worker in range(workers) for k in range(20)]
        assert sum(1 for at in sent if down < at <= back - probe.timeout) >= PROBES_WHILE_AWAY, phase


def test_lost_data_fails_a_drill_whatever_its_invariants_say():
    result = DrillResult("x", "lost writes", {"lost": ["drill-pro-a.projects id 7"]}, data_lost=1)
    result.check("everything else", True, "fine")
    assert not result.ok
    assert "data lost: 1 (drill-pro-a.projects id 7)" in render(result) and "=> FAIL" in render(result)


def test_an_unknown_drill_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--short", "mainframe"])
    assert exit_info.value.code == 2 and "unknown drill(s) mainframe" in capsys.readouterr().err
