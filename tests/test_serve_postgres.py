"""The service on PostgreSQL: tickets, feedback, stats, adapters, jobs and the dashboard."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from adaptune.generate.local import LocalGenerator
from adaptune.serve import create_app, serve_settings
from adaptune.store import Store
from serve_fixtures import AUTH, TOKEN, register_adapter, seed_store, tiny_pair
from test_compare import rows
from tiny_lora import ignore_peft_warning

pytestmark = [pytest.mark.e2e, ignore_peft_warning]


def test_the_service_end_to_end_on_postgres(pg_store: Store, tmp_path) -> None:
    seed_store(pg_store, tmp_path)
    model, tok = tiny_pair()
    v1 = register_adapter(pg_store, model, tmp_path, seed=1, prod=True)
    v2 = register_adapter(pg_store, model, tmp_path, seed=2, prod=False)
    gen = LocalGenerator(model=model, tokenizer=tok)
    settings = serve_settings(api_token=TOKEN, warm=False, generator="none", max_new_tokens=4)
    three = next(r for r in rows(6) if r["number"] == 3)
    with TestClient(create_app(pg_store, settings, generator=gen)) as c:
        r = c.post(
            "/v1/tickets", json={"title": three["title"], "body": three["body"]}, headers=AUTH
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["similar"][0]["number"] == 3 and body["answer"]["adapter_version"] == v1
        fb = c.post(f"/v1/tickets/{body['id']}/feedback", json={"rating": "down"}, headers=AUTH)
        assert fb.status_code == 201 and fb.json()["arm"] == "production"
        assert (
            c.get("/v1/stats", headers=AUTH).json()["feedback"]["r"]["arms"]["production"]["down"]
            == 1
        )
        assert c.post(f"/v1/adapters/{v2}/promote", headers=AUTH).status_code == 200
        again = c.post("/v1/tickets", json={"title": "x", "body": "y"}, headers=AUTH).json()
        assert again["answer"]["adapter_version"] == v2
        job = c.post("/v1/jobs/train", json={"max_steps": 1}, headers=AUTH).json()
        assert c.get(f"/v1/jobs/{job['id']}", headers=AUTH).json()["state"] == "queued"
        page = c.get("/dashboard", headers=AUTH)
        assert page.status_code == 200 and v2 in page.text
