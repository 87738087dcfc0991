"""The scans' allow-lists are reviewed: each entry has a reason and an expiry within 90 days."""

from __future__ import annotations

import datetime as dt

from tools.allowlist import ALLOWLISTS, main, problems

TODAY = dt.date(2026, 11, 29)


def test_the_committed_allow_lists_are_valid():
    assert [p for path in ALLOWLISTS for p in problems(path, dt.date.today())] == []
    assert main([]) == 0


def test_entries_without_reason_or_with_a_stale_or_distant_expiry_are_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("vulnerabilities:\n"
                    "  - {id: CVE-1, statement: ok, expired_at: 2026-12-31}\n"
                    "  - {id: CVE-2, statement: 'not reachable: we never parse untrusted XML', expired_at: 2026-11-01}\n"
                    "  - {id: CVE-3, statement: 'not reachable: we never parse untrusted XML', expired_at: 2027-06-01}\n"
                    "  - {id: CVE-4, statement: 'not reachable: we never parse untrusted XML'}\n"
                    "  - {id: CVE-5, statement: 'not reachable: we never parse untrusted XML', expired_at: 2027-01-15}\n")
    found = problems(path, TODAY)
    assert [p.split(":")[1].strip() for p in found] == ["CVE-1", "CVE-2", "CVE-3", "CVE-4"]
