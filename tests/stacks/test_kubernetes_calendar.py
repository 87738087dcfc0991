"""The dated EKS standard-support table and the synth-time refusal of a version leaving it soon."""

from __future__ import annotations

import datetime as dt

import pytest

from stacks.config import (
    ENVIRONMENTS, KUBERNETES_STANDARD_SUPPORT_ENDS, MIN_STANDARD_SUPPORT_DAYS, UnsupportedKubernetesVersion,
    load_config, require_standard_support)


def test_every_environment_runs_a_version_with_six_months_of_standard_support_left_at_launch():
    launch = dt.date(2026, 11, 29)
    for name in ENVIRONMENTS:
        version = load_config(name).cluster.kubernetes_version
        assert (KUBERNETES_STANDARD_SUPPORT_ENDS[version] - launch).days >= 180, (name, version)


def test_1_34_is_refused_now_and_the_message_says_what_to_do():
    with pytest.raises(UnsupportedKubernetesVersion) as caught:
        require_standard_support("1.34", today=dt.date(2026, 11, 29))
    message = str(caught.value)
    assert "2026-12-02" in message and "3 days" in message
    assert "newest known: 1.36" in message and "docs/runbooks/kubernetes-upgrade.md" in message


@pytest.mark.parametrize(("days_left", "accepted"), [(MIN_STANDARD_SUPPORT_DAYS, True),
                                                      (MIN_STANDARD_SUPPORT_DAYS - 1, False)])
def test_the_60_day_boundary(days_left, accepted):
    ends = KUBERNETES_STANDARD_SUPPORT_ENDS["1.35"]
    today = ends - dt.timedelta(days=days_left)
    if accepted:
        assert require_standard_support("1.35", today=today) == ends
    else:
        with pytest.raises(UnsupportedKubernetesVersion):
            require_standard_support("1.35", today=today)


def test_an_unknown_version_is_refused_until_its_date_is_in_the_table():
    with pytest.raises(UnsupportedKubernetesVersion, match="not in KUBERNETES_STANDARD_SUPPORT_ENDS"):
        require_standard_support("1.99", today=dt.date(2026, 11, 29))


def test_standard_support_lasts_14_months_from_the_eks_release():
    """Sanity of the table itself: consecutive minors' ends are about four months apart."""
    versions = sorted(KUBERNETES_STANDARD_SUPPORT_ENDS, key=lambda v: tuple(map(int, v.split("."))))
    ends = [KUBERNETES_STANDARD_SUPPORT_ENDS[v] for v in versions]
    gaps = [(later - earlier).days for earlier, later in zip(ends, ends[1:])]
    assert all(60 <= gap <= 200 for gap in gaps), dict(zip(versions[1:], gaps))
