"""Faults: ``kill -9`` of the server mid-storm, a model path that does not exist, a corrupt row.

Nothing acknowledged is lost and nothing is stored twice after a crash and a re-send of what
was not acknowledged; a broken model or a corrupt database row gives a clear error while the
service keeps answering. (A corrupt adapter falling back is in ``test_serve.py``; training
resume after ``kill -9`` in ``test_train_resume.py``; the worker's lease in ``test_worker.py``.)
"""

from __future__ import annotations

import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import update

from adaptune.generate.local import LocalGenerator
from adaptune.serve import create_app, serve_settings
from adaptune.store import schema
from serve_fixtures import AUTH, TOKEN, seed_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import webhook_load as load


def test_kill_9_mid_storm_then_resend_loses_and_duplicates_nothing(tmp_path):
    home = tmp_path / "home"
    sends, issues = load.plan(360, redeliver=0.1, seed=7)
    crash = load.crash_and_resend(home, sends, clients=16, kill_after=120)
    assert 120 <= crash["acked_before_kill"] < len(sends)
    assert crash["resent"] > 0, "the kill came before the storm ended"
    assert crash["acked_lost_by_crash"] == 0, "an acknowledged delivery was lost"
    assert crash["resend_non_2xx"] == 0
    result = load.check(home, issues, sends)
    assert result["issues_stored"] == issues, result
    assert result["issues_duplicated"] == result["issues_lost"] == result["issues_stale"] == 0
    assert result["deliveries_lost"] == result["deliveries_duplicated"] == 0
    assert result["deliveries_recorded"] == len({s.delivery for s in sends})


def test_missing_model_path_is_a_clear_error_and_tickets_still_answer(store, tmp_path, caplog):
    seed_store(store, tmp_path)
    missing = str(tmp_path / "no-such-model")
    generator = LocalGenerator(model_path=missing, home=store.settings.home)
    app = create_app(store, serve_settings(api_token=TOKEN, warm=False), generator=generator)
    with TestClient(app) as c:
        r = c.post("/v1/tickets", json={"title": "KeyError in load", "body": "x"}, headers=AUTH)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["answer"] is None
        assert "no-such-model" in got["answer_error"] and "does not exist" in got["answer_error"]
        assert got["similar"], "retrieval still answers without the model"
        quiet = c.post("/v1/tickets", json={"title": "t", "generate": False}, headers=AUTH)
        assert quiet.status_code == 200 and c.get("/healthz").status_code == 200
        assert c.get("/readyz").json()["model"] is False


def test_a_corrupt_ticket_row_does_not_break_reads_or_the_dashboard(store, tmp_path):
    seed_store(store, tmp_path)
    app = create_app(store, serve_settings(api_token=TOKEN, warm=False, generator="none"))
    with TestClient(app) as c:
        good = c.post("/v1/tickets", json={"title": "fine", "generate": False}, headers=AUTH)
        bad = c.post("/v1/tickets", json={"title": "broken", "generate": False}, headers=AUTH)
        t = schema.tickets
        with store.begin() as conn:
            conn.execute(
                update(t)
                .where(t.c.id == bad.json()["id"])
                .values(similar="{not json", triage="[", answer="\x00")
            )
        r = c.get(f"/v1/tickets/{bad.json()['id']}", headers=AUTH)
        assert r.status_code == 200
        assert (r.json()["similar"], r.json()["triage"], r.json()["answer"]) == ([], None, None)
        assert c.get(f"/v1/tickets/{good.json()['id']}", headers=AUTH).json()["similar"]
        page = c.get("/dashboard", headers=AUTH)
        assert page.status_code == 200 and "broken" in page.text
