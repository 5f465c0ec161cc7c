"""Secrets planted everywhere an issue's or a ticket's text enters adaptune never come out again.

Every kind the quality gate (``adaptune.dataset.scrub``) knows, an e-mail address and a private
key block are planted in issue titles and bodies, a fixing pull request, a webhook issue and
comment, and a feedback correction. After ingest, dataset build, training, the promotion gate's
evaluation, serving (with a real generator that records what it is asked) and export, none of
them is anywhere under ``ADAPTUNE_HOME`` except the database (the raw issue store), in a log
record, in a prompt, in an answer, or in a similar issue's title or solution. The tokens given to
adaptune itself (API token, webhook secret, ``GITHUB_TOKEN``) never reach logs, errors or the
database.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from adaptune.errors import AdaptuneError
from adaptune.generate.local import LocalGenerator
from adaptune.ingest import ingest
from adaptune.ingest.files import file_source
from adaptune.ingest.github import GitHubSource
from adaptune.pipeline import build_dataset
from adaptune.pipeline.train_job import train_job
from adaptune.registry import export, list_versions
from adaptune.serve import create_app, serve_settings
from adaptune.serve.tokens import create_token
from local_server import LocalServer, Reply
from serve_fixtures import SECRET, signed
from test_compare import rows
from tiny_lora import ignore_peft_warning
from tiny_model import one_thread, save_tiny

PLANTED = {  # how it is written in the text -> the part that must never come out
    "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8": "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv": "11ABCDEFG0123456789_abcdefghij",
    "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567": "aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567",
    "sk-proj-Abc123Def456Ghi789Jkl012Mno345": "Abc123Def456Ghi789Jkl012Mno345",
    "xoxb-123456789012-abcdefABCDEF": "123456789012-abcdefABCDEF",
    "AKIAIOSFODNN7EXAMPLF": "AKIAIOSFODNN7EXAMPLF",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ": "wJalrXUtnFEMI/K7MDENG",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9P": "dozjgNryP4J3jVmNHl0w5N",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq98L3gQkxZ\n"
    "-----END RSA PRIVATE KEY-----": "MIIEowIBAAKCAQEA7bq98L3gQkxZ",
    "password=Hunter2Secret99": "Hunter2Secret99",
    "Authorization: Bearer abcdef0123456789abcdef": "abcdef0123456789abcdef",
    "https://alice:S3cretPassw0rd@example.com/x": "S3cretPassw0rd",
    "jane.doe@example-corp.com": "jane.doe@example-corp.com",
}
NEEDLES = sorted(set(PLANTED.values()))
ALL = "\n\n".join(PLANTED)
OWN = {  # tokens given to adaptune itself
    "api": "adaptune-api-token-Zq81xW",
    "webhook": SECRET,
    "github": "ghp_OwnTokenOfTheOperator0123456789abcd",
}
TITLE_SECRET = "jane.doe@example-corp.com"
TICKET_SECRET = next(iter(PLANTED))  # the classic GitHub token


def _leaks(text: str | bytes) -> list[str]:
    blob = text if isinstance(text, str) else text.decode("utf-8", "replace")
    return [n for n in NEEDLES if n in blob]


def _planted_rows() -> list[dict]:
    out = []
    for r in rows(6):
        r = dict(r)
        if r["number"] < 500:  # issues: every secret in the body, an address in the title
            r["body"] = f"{r['body']}\n\nmy config:\n{ALL}\n"
            r["title"] = f"{r['title']} (reported by {TITLE_SECRET})"
        else:  # the fixing pull requests: the solutions the model learns and the index shows
            r["body"] = f"{r['body']} Set the token {list(PLANTED)[r['number'] % len(PLANTED)]}."
        out.append(r)
    return out


class RecordingGenerator(LocalGenerator):
    """The real in-process generator, keeping every request it is asked to answer."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.requests = []

    def generate(self, request):
        self.requests.append(request)
        return super().generate(request)


def _scan_home(home: Path) -> dict[str, list[str]]:
    found = {}
    for path in home.rglob("*"):
        if not path.is_file() or path.name.startswith("adaptune.db"):
            continue  # the database is the raw issue store
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        if hits := _leaks(data):
            found[str(path.relative_to(home))] = hits
    return found


def _webhooks(c: TestClient) -> None:
    issue = {**_planted_rows()[0], "number": 90, "state": "open"}
    issue["html_url"] = "https://github.com/o/r/issues/90"
    issue["updated_at"] = issue["created_at"]
    for event, delivery, payload in (
        ("issues", "s-1", {"action": "opened", "issue": issue}),
        (
            "issue_comment",
            "s-2",
            {
                "action": "created",
                "issue": issue,
                "comment": {"id": 7, "body": ALL, "created_at": issue["created_at"]},
            },
        ),
    ):
        raw, sig = signed({**payload, "repository": {"full_name": "o/r"}})
        headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery}
        r = c.post(
            "/webhooks/github",
            content=raw,
            headers={**headers, "X-Hub-Signature-256": sig, "Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text


@ignore_peft_warning
@pytest.mark.timeout(300)
def test_planted_secrets_never_leave_the_raw_store(store, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr("adaptune.serve.state.RELOAD_S", 0.0)  # see each new build at once
    path = tmp_path / "issues.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _planted_rows()))
    ingest(file_source(path), store)
    token = create_token(store, "ops", ["read", "write", "admin"])
    auth = {"Authorization": f"Bearer {token}"}
    tiny = save_tiny(tmp_path / "tiny")
    settings = serve_settings(warm=False, github_webhook_secret=SECRET, context_k=2)
    generator = RecordingGenerator(model_path=str(tiny), home=store.settings.home)
    app = create_app(store, settings, generator=generator)
    with TestClient(app) as c:
        _webhooks(c)
        # The very ticket and feedback that are read back carry the secrets (title and body).
        planted = {"title": f"KeyError {TICKET_SECRET}", "body": ALL, "generate": False}
        first = c.post("/v1/tickets", json=planted, headers=auth)
        assert first.status_code == 200, first.text
        params = {"model": str(tiny), "max_steps": 2, "batch_size": 2, "max_len": 256}
        with one_thread():
            job = train_job(store, "r", {**params, "heldout_per_window": 3, "lr": 5e-3})
        assert job["version"]
        fb = {"rating": "down", "corrected_answer": f"Rotate it: {ALL}", "resolved": True}
        assert c.post(
            f"/v1/tickets/{first.json()['id']}/feedback", json=fb, headers=auth
        ).is_success
        build_dataset(store, "r")  # the correction becomes a qa example of the next build
        ticket = {"title": rows(6)[2]["title"], "body": rows(6)[2]["body"], "max_new_tokens": 8}
        answered = c.post("/v1/tickets", json=ticket, headers=auth)
        assert answered.status_code == 200, answered.text
        again = c.get(f"/v1/tickets/{answered.json()['id']}", headers=auth)
        first_again = c.get(f"/v1/tickets/{first.json()['id']}", headers=auth)
        page = c.get("/dashboard", headers=auth)
    out = answered.json()
    assert out["answer"] is not None and out["similar"], out
    assert any(s["solution"] for s in out["similar"]), out["similar"]
    assert generator.requests and any(r.context for r in generator.requests)
    export(store, job["version"], store.settings.home / "exports" / "prod")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from adaptune.pipeline.compare import CompareConfig, compare

    small = CompareConfig(
        first=1,
        last=2,
        max_steps=1,
        batch_size=2,
        max_len=256,
        heldout_per_window=2,
        ranking_examples=2,
        probes_per_window=1,
    )
    lm, tok = AutoModelForCausalLM.from_pretrained(tiny), AutoTokenizer.from_pretrained(tiny)
    with one_thread():
        _, report_dir = compare(store, "r", small, model=lm, tokenizer=tok)
    report = (report_dir / "report.html").read_text()
    assert "<html" in report and _leaks(report) == [], "the HTML report shows a secret"

    assert _leaks(json.dumps(out)) == [] and _leaks(again.text) == [], "answer or similar leaks"
    assert _leaks(page.text) == [], "the dashboard shows a secret"
    # ... while showing that very ticket and its correction, with placeholders
    assert page.status_code == 200 and "KeyError &lt;GITHUB_TOKEN&gt;" in page.text
    assert "Rotate it: &lt;" in page.text
    read_back = first_again.json()
    assert _leaks(first_again.text) == [] and TICKET_SECRET not in first_again.text
    assert read_back["feedback"][-1]["corrected_answer"].startswith("Rotate it: <")
    assert "<PRIVATE_KEY>" in read_back["feedback"][-1]["corrected_answer"]
    assert _leaks(repr(generator.requests)) == [], "a prompt carries a secret"
    assert _scan_home(store.settings.home) == {}
    logged = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert _leaks("\n".join(logged)) == []
    assert any(v.version == job["version"] for v in list_versions(store))
    store.close()  # the planting worked: the raw store holds every secret
    raw = b"".join(p.read_bytes() for p in store.settings.home.glob("adaptune.db*"))
    assert _leaks(raw) == NEEDLES


def test_own_tokens_never_reach_logs_errors_or_the_database(store, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("GITHUB_TOKEN", OWN["github"])
    stored = create_token(store, "bot", ["write"])
    settings = serve_settings(
        api_token=OWN["api"], warm=False, generator="none", github_webhook_secret=SECRET
    )
    app = create_app(store, settings)
    answers = []
    with TestClient(app) as c:
        for header in (f"Bearer {OWN['api']}x", f"Bearer {stored[:-1]}", f"Basic {OWN['api']}"):
            answers.append(c.post("/v1/jobs/train", json={}, headers={"Authorization": header}))
        answers.append(
            c.post("/webhooks/github", content=b"{}", headers={"X-Hub-Signature-256": "sha256=0"})
        )
        answers.append(c.get("/v1/adapters", headers={"Authorization": f"Bearer {stored}"}))
        answers.append(c.get("/metrics"))
    assert [a.status_code for a in answers[:4]] == [401, 401, 401, 401]
    with LocalServer(lambda req: Reply(401, {"message": "Bad credentials"})) as server:
        with pytest.raises(AdaptuneError) as err:
            ingest(GitHubSource("o/r", api_url=server.url, token=OWN["github"]), store)
        assert server.requests[0].headers["authorization"].endswith(OWN["github"])
    secrets = [OWN["api"], OWN["webhook"], OWN["github"], stored]
    texts = [a.text + json.dumps(dict(a.headers)) for a in answers] + [str(err.value)]
    texts += [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    texts.append(repr(settings))
    assert [s for s in secrets if any(s in t for t in texts)] == []
    store.close()
    db = b"".join(p.read_bytes() for p in store.settings.home.glob("adaptune.db*"))
    assert [s for s in secrets if s.encode() in db] == []
