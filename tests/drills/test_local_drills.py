"""The local failure drills (`make drills`): the short version of each runs here for real —
throwaway PostgreSQL/Redis, the API and worker as processes, a locust load — and must hold its
invariants; the invariant checks themselves are shown to fail on bad runs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from drills.__main__ import main, render
from drills.platform import SHORT, LoadRun
from drills.scenarios import DRILLS, DrillResult, _admitted_against_limit, _baseline, _unaffected
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
    from tenant_provisioner.drills.interruption import Sample
    back = 100.0
    healthy = [Sample(back + second + i / 10, 200) for second in range(3, 8) for i in range(10)]
    failing = [Sample(back + second + i / 10, 503) for second in range(0, 3) for i in range(10)]
    assert _clients_recovered(failing + healthy, back, baseline=0.0) == 3.0
    assert _clients_recovered(healthy + [Sample(back + 7.5, 503)] * 5, back, baseline=0.0) is None


def test_lost_data_fails_a_drill_whatever_its_invariants_say():
    result = DrillResult("x", "lost writes", {"lost": ["drill-pro-a.projects id 7"]}, data_lost=1)
    result.check("everything else", True, "fine")
    assert not result.ok
    assert "data lost: 1 (drill-pro-a.projects id 7)" in render(result) and "=> FAIL" in render(result)


def test_an_unknown_drill_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--short", "mainframe"])
    assert exit_info.value.code == 2 and "unknown drill(s) mainframe" in capsys.readouterr().err
