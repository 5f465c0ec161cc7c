"""A storm of signed GitHub deliveries against a real ``adaptune serve`` process.

The shorter version of ``bench/webhook_load.py``: a few hundred deliveries from 16 clients,
re-deliveries and out-of-order events included; every delivery answered 2xx, every issue stored
once with its newest state, every delivery recorded once. On SQLite, and on a throw-away
PostgreSQL cluster when its server binaries are installed.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import webhook_load as load

from pg_cluster import cluster, fresh_database, unavailable_reason

CLEAN = {
    "issues_duplicated": 0,
    "issues_lost": 0,
    "issues_stale": 0,
    "deliveries_lost": 0,
    "deliveries_duplicated": 0,
}


def _storm(home: Path, database_url: str | None = None) -> None:
    sends, issues = load.plan(240, redeliver=0.1, seed=3)
    assert len({s.delivery for s in sends}) < len(sends), "the plan re-delivers some"
    with load.server(home, database_url) as base:
        out = load.storm(base, sends, clients=16)
    assert [s for s in out.statuses if s is None or not 200 <= s < 300] == []
    result = load.check(home, issues, sends, database_url)
    assert {k: result[k] for k in CLEAN} == CLEAN, result
    assert result["issues_stored"] == issues
    assert result["deliveries_recorded"] == len({s.delivery for s in sends})


def test_plan_sends_events_out_of_order_and_again():
    sends, issues = load.plan(300, redeliver=0.1, seed=1)
    assert len(sends) == 300 and issues == 90
    first_seen: dict[int, str] = {}
    for s in sends:
        first_seen.setdefault(s.number, s.delivery)
    out_of_order = sum(1 for d in first_seen.values() if not d.endswith("-0"))
    assert out_of_order > 30, "many issues see an edit or close before their opening"
    assert len(sends) - len({s.delivery for s in sends}) == 30


def test_storm_on_sqlite_loses_and_duplicates_nothing(tmp_path):
    _storm(tmp_path / "home")


@pytest.mark.e2e
def test_storm_on_postgres_loses_and_duplicates_nothing(tmp_path):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with cluster() as admin:
        _storm(tmp_path / "home", fresh_database(admin, f"load_{uuid.uuid4().hex[:10]}"))
