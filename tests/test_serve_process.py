"""The service as a real process (``adaptune serve``), the dashboard in Chromium, the
OpenAI-compatible generator against a real local HTTP server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from adaptune.generate import GenerationError, Request
from adaptune.generate.openai import OpenAIGenerator
from adaptune.serve import create_app, serve_settings
from browser import chromium, screenshot
from local_server import LocalServer, Reply
from serve_fixtures import AUTH, SECRET, TOKEN, register_adapter, seed_store, signed, tiny_pair
from test_compare import rows
from tiny_lora import ignore_peft_warning

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_adaptune_serve_runs_as_a_process(store, tmp_path, workspace):
    seed_store(store, tmp_path)
    store.close()
    port = _port()
    env = {
        **os.environ,
        "ADAPTUNE_HOME": str(workspace),
        "ADAPTUNE_API_TOKEN": TOKEN,
        "ADAPTUNE_GENERATOR": "none",
        "ADAPTUNE_GITHUB_WEBHOOK_SECRET": SECRET,
        "PYTHONPATH": str(ROOT / "src"),
    }
    cmd = [sys.executable, "-m", "adaptune", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("the server never became ready")
        four = next(r for r in rows(6) if r["number"] == 4)
        ticket = {"title": four["title"], "body": four["body"], "generate": False}
        r = httpx.post(f"{base}/v1/tickets", json=ticket, headers=AUTH, timeout=30)
        assert r.status_code == 200 and r.json()["similar"][0]["number"] == 4
        issue = {
            "number": 77,
            "title": "Streaming mode hangs on parquet shards",
            "body": "iter over IterableDataset never returns",
            "state": "open",
            "created_at": "2023-01-01T00:00:00Z",
            "updated_at": "2023-01-01T00:00:00Z",
            "html_url": "https://github.com/o/r/issues/77",
            "labels": [],
            "user": {"login": "someone"},
        }
        raw, sig = signed({"action": "opened", "issue": issue, "repository": {"full_name": "o/r"}})
        headers = {
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": "d-1",
            "X-GitHub-Hook-ID": "1",
            "X-Hub-Signature-256": sig,
            "Content-Type": "application/json",
        }
        assert httpx.post(f"{base}/webhooks/github", content=raw, headers=headers).is_success
        bad = {**headers, "X-GitHub-Delivery": "d-2", "X-Hub-Signature-256": "sha256=00"}
        assert httpx.post(f"{base}/webhooks/github", content=raw, headers=bad).status_code == 401
        ticket = {
            "title": "streaming hangs on parquet",
            "body": "IterableDataset",
            "generate": False,
        }
        r = httpx.post(f"{base}/v1/tickets", json=ticket, headers=AUTH, timeout=30)
        assert r.json()["similar"][0]["number"] == 77, "the webhook's issue is searchable at once"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, log = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -15).
    assert proc.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in log, log[-2000:]


@ignore_peft_warning
def test_dashboard_shows_lineage_arms_tickets_and_jobs(store, tmp_path):
    seed_store(store, tmp_path)
    model, _ = tiny_pair()
    v1 = register_adapter(store, model, tmp_path, seed=1, prod=True)
    from adaptune.registry import set_metrics

    set_metrics(
        store,
        v1,
        {
            "gate": {
                "passed": True,
                "reason": "first adapter beats the base",
                "candidate": {"2022Q3": 3.21},
            }
        },
    )
    app = create_app(store, serve_settings(api_token=TOKEN, warm=False, generator="none"))
    with TestClient(app) as c:
        tid = c.post("/v1/tickets", json={"title": "KeyError 52", "generate": False}, headers=AUTH)
        c.post(f"/v1/tickets/{tid.json()['id']}/feedback", json={"rating": "up"}, headers=AUTH)
        c.post("/v1/jobs/train", json={}, headers=AUTH)
        page = c.get("/dashboard", headers=AUTH)
    assert page.status_code == 200
    html = page.text
    for needle in (
        v1,
        "production",
        "3.210",
        "first adapter beats the base",
        "KeyError 52",
        "<svg",
        "queued",
        "train",
    ):
        assert needle in html, needle
    path = tmp_path / "dashboard.html"
    path.write_text(html)
    if chromium() is None:
        pytest.skip("needs Debian's chromium for the screenshot (apt-get install chromium)")
    png = tmp_path / "dashboard.png"
    screenshot(path, png, "1280,1600", tmp_path / "profile")
    assert png.exists(), "chromium wrote no screenshot"
    image = pytest.importorskip("PIL.Image")
    with image.open(png) as shot:
        gray = np.asarray(shot.convert("L"), dtype=float)
    assert gray.std() > 10, "the screenshot is blank"


def test_openai_generator_talks_to_a_real_server(tmp_path):
    loaded: list[dict] = []

    def handler(req):
        if req.path == "/v1/models":
            return Reply(body={"data": [{"id": "base"}]})
        if req.path == "/v1/load_lora_adapter":
            loaded.append(req.json())
            return Reply(body="Success: LoRA adapter loaded")
        body = req.json()
        text = f"answer from {body['model']} with {len(body['messages'])} messages"
        return Reply(
            body={"choices": [{"message": {"content": text}}], "usage": {"completion_tokens": 7}}
        )

    with LocalServer(handler) as server:
        gen = OpenAIGenerator(f"{server.url}/v1", "base", api_key="k")
        assert gen.ready()
        request = Request(
            "Title: x", (("t", "fix"),), adapter_version="r-v2", adapter_path=tmp_path
        )
        got = gen.generate(request)
        assert got.text == "answer from r-v2 with 2 messages" and got.tokens == 7
        assert loaded == [{"lora_name": "r-v2", "lora_path": str(tmp_path)}]
        gen.generate(request)
        assert len(loaded) == 1, "an adapter is loaded into the server once"
        sent = server.requests[-1]
        assert sent.headers["authorization"] == "Bearer k" and sent.json()["temperature"] == 0
        assert "Similar resolved issues" in sent.json()["messages"][1]["content"]
    failing = LocalServer(lambda req: Reply(500, {"error": "boom"}))
    with failing as server, pytest.raises(GenerationError, match="500"):
        OpenAIGenerator(f"{server.url}/v1", "base").generate(Request("q"))
