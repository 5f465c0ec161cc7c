"""Reads and log-in: wrong tokens are refused even where reads are open, reads are closed by
default, and the dashboard asks for a token through a form whose session only ever reads."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from adaptune.serve import create_app, serve_settings
from adaptune.serve.sessions import COOKIE, Sessions
from adaptune.serve.tokens import create_token, revoke_token
from adaptune.store import schema
from serve_fixtures import AUTH, TOKEN, seed_store

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def seeded(store, tmp_path):
    seed_store(store, tmp_path)
    return store


def _client(store, **settings) -> TestClient:
    settings.setdefault("api_token", TOKEN)
    settings.setdefault("warm", False)
    settings.setdefault("generator", "none")
    return TestClient(create_app(store, serve_settings(**settings)))


def test_reads_are_closed_by_default(seeded, monkeypatch):
    monkeypatch.delenv("ADAPTUNE_OPEN_READS", raising=False)
    assert serve_settings().open_reads is False
    with _client(seeded) as c:
        for path in ("/v1/adapters", "/v1/jobs", "/v1/stats", "/v1/tickets/x"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers=AUTH).status_code in (200, 404), path


@pytest.mark.parametrize("open_reads", [True, False])
def test_a_revoked_or_malformed_token_is_401_even_with_open_reads(seeded, open_reads):
    reader = create_token(seeded, "reader", ["read"])
    assert revoke_token(seeded, "reader")
    bad = (
        f"Bearer {reader}",  # revoked
        "Bearer not-a-token",  # unknown
        "Bearer ",  # empty
        f"Basic {TOKEN}",  # another scheme
        "garbage",  # no scheme
    )
    with _client(seeded, open_reads=open_reads) as c:
        for header in bad:
            for path in ("/v1/adapters", "/v1/stats", "/dashboard"):
                r = c.get(path, headers={"Authorization": header})
                assert r.status_code == 401, (header, path, r.status_code)
                assert r.headers["www-authenticate"] == "Bearer"
        anonymous = c.get("/v1/adapters").status_code
    assert anonymous == (200 if open_reads else 401)


def test_the_dashboard_asks_for_a_token_and_its_session_only_reads(seeded, caplog):
    caplog.set_level(logging.DEBUG)
    reader = create_token(seeded, "reader", ["read"])
    writer = create_token(seeded, "writer", ["write"])
    with _client(seeded) as c:
        first = c.get("/dashboard")
        assert first.status_code == 401 and "text/html" in first.headers["content-type"]
        assert '<form method="post" action="/login">' in first.text
        assert 'type="password"' in first.text and "Lineage" not in first.text

        wrong = c.post("/login", content="token=nope", headers=FORM)
        assert wrong.status_code == 401 and "unknown or revoked" in wrong.text
        assert COOKIE not in wrong.cookies
        no_read = c.post("/login", content=f"token={writer}", headers=FORM)
        assert no_read.status_code == 403 and COOKIE not in no_read.cookies
        assert c.post("/login", json={"token": reader}).status_code == 415
        assert c.post("/login", content="nothing=1", headers=FORM).status_code == 422

        ok = c.post("/login", content=f"token={reader}", headers=FORM, follow_redirects=False)
        assert ok.status_code == 303 and ok.headers["location"] == "/dashboard"
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert reader not in cookie, "the cookie carries a session id, not the token"
        session = ok.cookies[COOKIE]
        jar = {COOKIE: session}

        page = c.get("/dashboard", cookies=jar)
        assert page.status_code == 200 and "adaptune dashboard" in page.text
        # The session reads pages only: it never writes, and the JSON API wants a bearer token.
        ticket = {"title": "t", "generate": False}
        assert c.post("/v1/tickets", json=ticket, cookies=jar).status_code == 401
        assert c.post("/v1/jobs/train", json={}, cookies=jar).status_code == 401
        assert c.get("/v1/adapters", cookies=jar).status_code == 401

        revoke_token(seeded, "reader")  # ends its sessions at once
        after = c.get("/dashboard", cookies=jar)
        assert after.status_code == 401 and "<form" in after.text

        env = c.post("/login", content=f"token={TOKEN}", headers=FORM, follow_redirects=False)
        jar = {COOKIE: env.cookies[COOKIE]}
        assert c.get("/dashboard", cookies=jar).status_code == 200
        out = c.post("/logout", cookies=jar, follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert c.get("/dashboard", cookies=jar).status_code == 401
        assert c.get("/dashboard", cookies={COOKIE: "forged"}).status_code == 401
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert reader not in logged and TOKEN not in logged and session not in logged


def test_sessions_expire_and_stay_bounded():
    sessions = Sessions(ttl_s=10)
    sid = sessions.open("digest", now=100.0)
    assert sessions.get(sid, now=105.0).token_sha256 == "digest"
    assert sessions.get(sid, now=111.0) is None and len(sessions) == 0
    assert sessions.get("x" * 500) is None and sessions.get(None) is None


def test_feedback_shares_the_rate_limit_with_tickets(seeded):
    with _client(seeded, rate_limit_per_minute=3) as c:
        ticket = c.post("/v1/tickets", json={"title": "KeyError", "generate": False}, headers=AUTH)
        assert ticket.status_code == 200
        path = f"/v1/tickets/{ticket.json()['id']}/feedback"
        posts = [c.post(path, json={"rating": "up"}, headers=AUTH) for _ in range(3)]
    assert [p.status_code for p in posts] == [201, 201, 429]
    assert 0 < int(posts[-1].headers["Retry-After"]) <= 60
    with seeded.begin() as conn:
        rows = conn.execute(select(func.count()).select_from(schema.feedback)).scalar_one()
    assert rows == 1, "one token, one ticket: one row however often it posts"
