"""The service in-process (app factory + TestClient): tickets, auth, limits, feedback, A/B."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from adaptune.generate.local import LocalGenerator
from adaptune.serve import create_app, serve_settings
from adaptune.serve.tokens import create_token
from serve_fixtures import AUTH, TOKEN, register_adapter, seed_store, tiny_pair
from test_compare import rows
from tiny_lora import ignore_peft_warning

pytestmark = ignore_peft_warning


@pytest.fixture
def seeded(store, tmp_path):
    seed_store(store, tmp_path)
    return store


def client_for(store, generator=None, **settings):
    settings.setdefault("api_token", TOKEN)
    settings.setdefault("warm", False)
    settings.setdefault("generator", "none")
    app = create_app(store, serve_settings(**settings), generator=generator)
    return TestClient(app)


ISSUE3 = next(r for r in rows(6) if r["number"] == 3)
TICKET = {"title": ISSUE3["title"], "body": ISSUE3["body"]}


def test_health_and_readiness_follow_the_indexes(seeded):
    with client_for(seeded) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        before = c.get("/readyz")
        assert before.status_code == 503 and before.json()["indexes"] == {"r": False}
        assert c.post("/v1/tickets", json={**TICKET, "generate": False}, headers=AUTH).is_success
        after = c.get("/readyz")
        assert after.status_code == 200 and after.json()["ready"] is True


def test_a_ticket_without_generation_gets_triage_and_similar_issues(seeded):
    # The model path does not exist: with generate false no model may be touched.
    broken = LocalGenerator(model_path="/nonexistent/model")
    with client_for(seeded, generator=broken) as c:
        r = c.post("/v1/tickets", json={**TICKET, "generate": False}, headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) >= {"id", "triage", "similar", "duplicate_of", "answer"}
        assert body["answer"] is None and not broken.ready()
        assert body["similar"][0]["number"] == 3
        assert set(body["similar"][0]) == {"number", "title", "url", "score", "state", "solution"}
        assert body["similar"][0]["solution"], "a resolved issue's fix comes with it"
        again = c.get(f"/v1/tickets/{body['id']}", headers=AUTH).json()
        assert again["similar"] == body["similar"] and again["feedback"] == []


def test_write_endpoints_need_a_token_with_the_scope(seeded):
    reader = create_token(seeded, "reader", ["read"])
    writer = create_token(seeded, "writer", ["write"])
    with client_for(seeded) as c:
        body = {**TICKET, "generate": False}
        assert c.post("/v1/tickets", json=body).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert c.post("/v1/tickets", json=body, headers=wrong).status_code == 401
        read = {"Authorization": f"Bearer {reader}"}
        assert c.post("/v1/tickets", json=body, headers=read).status_code == 403
        write = {"Authorization": f"Bearer {writer}"}
        assert c.post("/v1/tickets", json=body, headers=write).status_code == 200
        assert c.post("/v1/adapters/rollback", json={}, headers=write).status_code == 403
        assert c.post("/v1/jobs/train", json={}, headers=read).status_code == 403
    with client_for(seeded, open_reads=False) as c:
        assert c.get("/v1/adapters").status_code == 401
        assert c.get("/v1/adapters", headers={"Authorization": f"Bearer {reader}"}).is_success


def test_no_configured_token_refuses_writes_and_says_how_to_fix_it(seeded):
    with client_for(seeded, api_token=None) as c:
        r = c.post("/v1/tickets", json=TICKET, headers=AUTH)
        assert r.status_code == 401 and "adaptune tokens create" in r.json()["detail"]


def test_bad_bodies_are_refused_with_the_field_named_and_nothing_stored(seeded):
    with client_for(seeded, max_body_bytes=4096) as c:
        r = c.post("/v1/tickets", json={"body": "x"}, headers=AUTH)
        assert r.status_code == 422 and "title" in r.json()["detail"]
        r = c.post(
            "/v1/tickets",
            content=b"{not json",
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert r.status_code == 422
        r = c.post("/v1/tickets", json={**TICKET, "generate": "maybe"}, headers=AUTH)
        assert r.status_code == 422 and "generate" in r.json()["detail"]
        r = c.post("/v1/tickets", json={**TICKET, "body": "x" * 10_000}, headers=AUTH)
        assert r.status_code == 413 and "4096" in r.json()["detail"]
        r = c.post("/v1/tickets", json={**TICKET, "domain": "nope"}, headers=AUTH)
        assert r.status_code == 422 and "nope" in r.json()["detail"]
        assert c.get("/v1/tickets/unknown", headers=AUTH).status_code == 404
    from sqlalchemy import func, select

    from adaptune.store import schema

    with seeded.begin() as conn:
        assert conn.execute(select(func.count()).select_from(schema.tickets)).scalar() == 0


def test_generation_uses_production_and_feedback_is_attributed(seeded, tmp_path):
    model, tok = tiny_pair()
    v1 = register_adapter(seeded, model, tmp_path, seed=1, prod=True)
    gen = LocalGenerator(model=model, tokenizer=tok)
    with client_for(seeded, generator=gen, max_new_tokens=8) as c:
        r = c.post("/v1/tickets", json=TICKET, headers=AUTH)
        assert r.status_code == 200, r.text
        answer = r.json()["answer"]
        assert answer["adapter_version"] == v1 and answer["arm"] == "production"
        assert isinstance(answer["text"], str) and answer["latency_ms"] > 0
        tid = r.json()["id"]
        fb = c.post(
            f"/v1/tickets/{tid}/feedback",
            json={"rating": "up", "corrected_answer": "Pass split='train'.", "resolved": True},
            headers=AUTH,
        )
        assert fb.status_code == 201, fb.text
        assert fb.json()["adapter_version"] == v1 and fb.json()["arm"] == "production"
        bad = c.post(f"/v1/tickets/{tid}/feedback", json={"rating": "meh"}, headers=AUTH)
        assert bad.status_code == 422 and "rating" in bad.json()["detail"]
        assert (
            c.post("/v1/tickets/nope/feedback", json={"rating": "up"}, headers=AUTH).status_code
            == 404
        )
        stats = c.get("/v1/stats", headers=AUTH).json()
        arm = stats["feedback"]["r"]["arms"]["production"]
        assert arm["up"] == 1 and arm["n"] == 1 and arm["ci95"][0] < 1.0
        assert c.get(f"/v1/tickets/{tid}", headers=AUTH).json()["feedback"][0]["rating"] == "up"


def test_ab_share_sends_tickets_to_the_candidate(seeded, tmp_path):
    model, tok = tiny_pair()
    register_adapter(seeded, model, tmp_path, seed=1, prod=True)
    v2 = register_adapter(seeded, model, tmp_path, seed=2, prod=False)
    gen = LocalGenerator(model=model, tokenizer=tok)
    with client_for(seeded, generator=gen, ab_share=1.0, max_new_tokens=4) as c:
        c.post(f"/v1/adapters/{v2}/promote?alias=candidate", headers=AUTH).raise_for_status()
        answer = c.post("/v1/tickets", json=TICKET, headers=AUTH).json()["answer"]
        assert answer["arm"] == "candidate" and answer["adapter_version"] == v2


def test_promotion_hot_swaps_under_concurrent_requests(seeded, tmp_path):
    model, tok = tiny_pair()
    v1 = register_adapter(seeded, model, tmp_path, seed=1, prod=True)
    v2 = register_adapter(seeded, model, tmp_path, seed=2, prod=False)
    gen = LocalGenerator(model=model, tokenizer=tok)
    statuses, versions = [], []
    with client_for(seeded, generator=gen, max_new_tokens=4) as c:

        def ask(n: int) -> None:
            for _ in range(n):
                r = c.post("/v1/tickets", json=TICKET, headers=AUTH)
                statuses.append(r.status_code)
                versions.append((r.json().get("answer") or {}).get("adapter_version"))

        threads = [threading.Thread(target=ask, args=(4,)) for _ in range(3)]
        for t in threads:
            t.start()
        c.post(f"/v1/adapters/{v2}/promote", headers=AUTH).raise_for_status()
        for t in threads:
            t.join()
        after = c.post("/v1/tickets", json=TICKET, headers=AUTH).json()["answer"]
    assert statuses == [200] * 12
    assert set(versions) <= {v1, v2} and None not in versions
    assert after["adapter_version"] == v2


def test_a_corrupt_adapter_falls_back_to_the_last_good_one_and_says_so(seeded, tmp_path):
    model, tok = tiny_pair()
    v1 = register_adapter(seeded, model, tmp_path, seed=1, prod=True)
    v2 = register_adapter(seeded, model, tmp_path, seed=2, prod=True)
    from adaptune.registry import get

    (get(seeded, v2).path / "adapter_model.safetensors").write_bytes(b"garbage")
    gen = LocalGenerator(model=model, tokenizer=tok)
    with client_for(seeded, generator=gen, max_new_tokens=4) as c:
        r = c.post("/v1/tickets", json=TICKET, headers=AUTH)
        assert r.status_code == 200
        assert r.json()["answer"]["adapter_version"] == v1
        assert v2 in r.json()["answer_error"] and r.json()["similar"]
        (get(seeded, v1).path / "adapter_config.json").write_text("{")
        r = c.post("/v1/tickets", json=TICKET, headers=AUTH)
        assert r.status_code == 200 and r.json()["answer"]["arm"] == "base"


def test_rate_limit_answers_429_with_retry_after(seeded):
    with client_for(seeded, rate_limit_per_minute=2) as c:
        body = {**TICKET, "generate": False}
        codes = [c.post("/v1/tickets", json=body, headers=AUTH).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = c.post("/v1/tickets", json=body, headers=AUTH)
        assert 0 < int(r.headers["Retry-After"]) <= 60


def test_cors_is_closed_by_default(seeded):
    with client_for(seeded) as c:
        r = c.options(
            "/v1/tickets",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in r.headers
    with client_for(seeded, cors_origins=("https://ok.example",)) as c:
        r = c.options(
            "/v1/tickets",
            headers={"Origin": "https://ok.example", "Access-Control-Request-Method": "POST"},
        )
        assert r.headers["access-control-allow-origin"] == "https://ok.example"


def test_metrics_and_openapi(seeded, tmp_path):
    model, _ = tiny_pair()
    v1 = register_adapter(seeded, model, tmp_path, seed=1, prod=True)
    with client_for(seeded) as c:
        c.post("/v1/tickets", json={**TICKET, "generate": False}, headers=AUTH)
        text = c.get("/metrics").text
        assert (
            'adaptune_http_requests_total{method="POST",route="/v1/tickets",status="200"}' in text
        )
        assert f'adaptune_production_adapter{{domain="r",version="{v1}"}} 1.0' in text
        assert 'adaptune_queue_depth{state="queued"}' in text
        spec = c.get("/openapi.json").json()
        for path in (
            "/v1/tickets",
            "/v1/tickets/{ticket_id}",
            "/v1/tickets/{ticket_id}/feedback",
            "/webhooks/github",
            "/webhooks/jira",
            "/v1/adapters",
            "/v1/adapters/{version}/promote",
            "/v1/adapters/rollback",
            "/v1/jobs/train",
            "/v1/jobs/{job_id}",
            "/v1/stats",
            "/dashboard",
            "/healthz",
            "/readyz",
            "/metrics",
        ):
            assert path in spec["paths"], path
        ticket = spec["components"]["schemas"]["TicketIn"]
        assert "title" in ticket["required"]


def test_adapters_rollback_and_jobs_over_http(seeded, tmp_path):
    model, _ = tiny_pair()
    v1 = register_adapter(seeded, model, tmp_path, seed=1, prod=True)
    v2 = register_adapter(seeded, model, tmp_path, seed=2, prod=True)
    with client_for(seeded) as c:
        listed = c.get("/v1/adapters", headers=AUTH).json()
        assert [v["version"] for v in listed] == [v1, v2]
        assert listed[1]["aliases"] == ["production"]
        back = c.post("/v1/adapters/rollback", json={"domain": "r"}, headers=AUTH)
        assert back.status_code == 200 and back.json()["version"] == v1
        assert c.post("/v1/adapters/r-v99/promote", headers=AUTH).status_code == 404
        job = c.post("/v1/jobs/train", json={"max_steps": 2}, headers=AUTH)
        assert job.status_code == 202, job.text
        again = c.post("/v1/jobs/train", json={"max_steps": 2}, headers=AUTH)
        assert again.json()["id"] == job.json()["id"], "a queued job is not queued twice"
        got = c.get(f"/v1/jobs/{job.json()['id']}", headers=AUTH).json()
        assert (
            got["state"] == "queued" and got["domain"] == "r" and got["payload"]["max_steps"] == 2
        )
        assert c.get("/v1/jobs/nope", headers=AUTH).status_code == 404


def test_a_promotion_over_http_sends_a_signed_notification(seeded, tmp_path):
    import hashlib
    import hmac
    import time

    from local_server import LocalServer, Reply

    model, _ = tiny_pair()
    v1 = register_adapter(seeded, model, tmp_path, seed=1, prod=False)
    with LocalServer(lambda req: Reply(200, {"ok": True})) as receiver:
        settings = {"notify_urls": (f"{receiver.url}/hook",), "notify_secret": "n-secret"}
        with client_for(seeded, **settings) as c:
            assert c.post(f"/v1/adapters/{v1}/promote", headers=AUTH).status_code == 200
            deadline = time.time() + 10
            while not receiver.requests and time.time() < deadline:
                time.sleep(0.05)
    got = receiver.requests[0]
    assert got.headers["x-adaptune-event"] == "adapter.promoted"
    assert v1 in got.json()["text"]
    mac = hmac.new(b"n-secret", got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-adaptune-signature-256"] == f"sha256={mac}"
