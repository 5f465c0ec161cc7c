"""Outgoing notifications against a real local HTTP server: signature, retries, backoff, formats."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import socket
from datetime import UTC, datetime, timedelta

import pytest

from adaptune.errors import ConfigError
from adaptune.notify import (
    WebhookNotifier,
    backoff_s,
    deliver_due,
    notify,
    outbox,
    summary,
)
from local_server import LocalServer, Reply

SECRET = "s3cret-key"


def soon() -> datetime:
    """A moment after every row written so far is due."""
    return datetime.now(UTC) + timedelta(minutes=1)


def test_a_signed_slack_body_is_delivered(store):
    with LocalServer(lambda req: Reply(200, "ok")) as server:
        data = {"version": "hf-v4", "domain": "hf", "before": 2.31, "after": 2.18}
        assert notify(store, "adapter.promoted", data, [server.url + "/hook"]) == 1
        assert deliver_due(store, SECRET) == {"sent": 1, "retried": 0, "failed": 0}
        (req,) = server.requests
    assert (req.method, req.path) == ("POST", "/hook")
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-adaptune-event"] == "adapter.promoted"
    expected = hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
    assert req.headers["x-adaptune-signature-256"] == f"sha256={expected}"
    body = req.json()
    assert body["text"] == (
        "adaptune: adapter hf-v4 promoted to production in domain hf (next-window NLL 2.31 → 2.18)"
    )
    assert (body["event"], body["data"]) == ("adapter.promoted", data)
    (row,) = outbox(store)
    assert req.headers["x-adaptune-delivery"] == str(row["id"])
    assert (row["state"], row["attempts"], row["last_error"]) == ("sent", 1, None)
    assert row["sent_at"] is not None and SECRET not in row["body"]


def test_json_format_and_no_signature_without_a_secret(store):
    with LocalServer(lambda req: Reply(204)) as server:
        notify(store, "job.failed", {"id": "abc", "error": "x"}, [server.url], fmt="json")
        assert deliver_due(store, None)["sent"] == 1
        (req,) = server.requests
    assert "x-adaptune-signature-256" not in req.headers
    assert set(req.json()) == {"event", "data", "created_at"}


def test_one_row_per_url_and_no_row_without_urls(store):
    assert notify(store, "job.succeeded", {}, ["http://a/1", " ", "http://b/2"]) == 2
    assert notify(store, "job.succeeded", {}, []) == 0
    assert [r["url"] for r in outbox(store)] == ["http://a/1", "http://b/2"]
    with pytest.raises(ConfigError, match="slack, json"):
        notify(store, "job.succeeded", {}, ["http://a/1"], fmt="xml")


def test_a_500_is_retried_after_the_backoff_then_sent(store):
    answers = iter([500, 200])
    with LocalServer(lambda req: Reply(next(answers))) as server:
        WebhookNotifier(store, [server.url]).send("job.succeeded", {"id": "j1", "kind": "train"})
        t0 = soon()
        assert deliver_due(store, SECRET, now=t0)["retried"] == 1
        (row,) = outbox(store)
        assert (row["state"], row["attempts"], row["last_error"]) == ("pending", 1, "HTTP 500")
        wait = (row["next_attempt_at"] - t0).total_seconds()
        assert 2 * 0.8 <= wait <= 2 * 1.2
        early = t0 + timedelta(seconds=1)
        assert deliver_due(store, SECRET, now=early) == {"sent": 0, "retried": 0, "failed": 0}
        assert len(server.requests) == 1
        later = t0 + timedelta(seconds=3)
        assert deliver_due(store, SECRET, now=later)["sent"] == 1
        first, second = server.requests
    assert first.body == second.body
    assert first.headers["x-adaptune-signature-256"] == second.headers["x-adaptune-signature-256"]
    assert outbox(store)[0]["state"] == "sent"


def test_backoff_doubles_with_jitter_up_to_ten_minutes():
    rng = random.Random(7)
    for attempts in range(1, 15):
        base = min(2**attempts, 600)
        wait = backoff_s(attempts, rng)
        assert base * 0.8 <= wait <= min(base * 1.2, 600)
    waits = [backoff_s(n, random.Random(0)) for n in range(1, 10)]
    assert waits == sorted(waits)
    assert len({backoff_s(3, random.Random(s)) for s in range(5)}) > 1


def test_a_dead_endpoint_fails_after_max_attempts(store):
    with LocalServer(lambda req: Reply(503)) as server:
        notify(store, "job.failed", {"id": "j"}, [server.url])
        now = soon()
        for _ in range(8):
            now += timedelta(minutes=11)
            deliver_due(store, None, now=now)
        (row,) = outbox(store)
        assert (row["state"], row["attempts"]) == ("failed", 8)
        assert deliver_due(store, None, now=now + timedelta(days=1))["sent"] == 0
        assert len(server.requests) == 8


def test_network_errors_are_retried_without_leaking_the_url_token(store):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/services/T0KEN-IN-PATH"
    notify(store, "job.succeeded", {"id": "j"}, [url])
    assert deliver_due(store, SECRET, now=soon())["retried"] == 1
    (row,) = outbox(store)
    assert row["state"] == "pending" and row["last_error"].startswith("ConnectError")
    assert "T0KEN" not in row["last_error"] and SECRET not in row["last_error"]


def test_a_row_being_delivered_is_not_sent_twice(store):
    sent_inside: list[dict] = []

    def answer(req):
        # Another deliverer polling while this row is in flight finds nothing due.
        sent_inside.append(deliver_due(store, None))
        return Reply(200)

    with LocalServer(answer) as server:
        notify(store, "job.succeeded", {"id": "j"}, [server.url])
        assert deliver_due(store, None)["sent"] == 1
    assert sent_inside == [{"sent": 0, "retried": 0, "failed": 0}]
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("event", "data", "line"),
    [
        (
            "adapter.candidate",
            {"version": "d-v3", "domain": "d", "reason": "window 2024Q1 regressed by 0.4"},
            "adaptune: adapter d-v3 stays a candidate in domain d: window 2024Q1 regressed by 0.4",
        ),
        (
            "job.succeeded",
            {"id": "0123456789", "kind": "train", "domain": "d", "result": {"version": "d-v3"}},
            "adaptune: train job 01234567 succeeded in domain d: d-v3",
        ),
        (
            "job.failed",
            {"id": "abcdefghij", "kind": "train", "attempts": 3, "error": "boom"},
            "adaptune: train job abcdefgh failed after 3 attempts: boom",
        ),
        (
            "adapter.promoted",
            {"version": "d-v4", "before": 2.3141, "after": 2.3102, "metric": "w9 NLL"},
            "adaptune: adapter d-v4 promoted to production (w9 NLL 2.3141 → 2.3102)",
        ),
        ("something.else", {"domain": "d"}, "adaptune: something.else in domain d"),
    ],
)
def test_summary_lines(event, data, line):
    assert summary(event, data) == line
    assert json.loads(json.dumps(line)) == line
