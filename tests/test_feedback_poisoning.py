"""Feedback cannot poison the training data: one row per ticket and client, and the same
quality gate as every other example (issue #19, finding 5).

A fuzz run once posted tickets titled ``"Title: 1"`` with the corrected answer ``"0"``, and the
next build held 115 qa examples made of that junk. Here the junk is replayed through the real
service and the real dataset build, and none of it may become an example, while a genuine
correction on a genuine ticket still does.
"""

from __future__ import annotations

import json
import random
import string
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from typer.testing import CliRunner

from adaptune.dataset.artifacts import iter_examples
from adaptune.dataset.gate import answer_reject_reason
from adaptune.dataset.taught import NO_CLIENT, SOURCE, dedupe_feedback
from adaptune.feedback import FeedbackError, record, win_rates
from adaptune.feedback.examples import feedback_examples
from adaptune.pipeline import build_dataset
from adaptune.serve import create_app, serve_settings
from adaptune.serve.tokens import create_token
from adaptune.store import Store, schema
from serve_fixtures import TOKEN, seed_store
from test_compare import rows

GENUINE_TICKET = {
    "title": "Tokenizer padding side ignored when batching with the collator",
    "body": (
        "When I pass padding_side='left' to the tokenizer call and batch with "
        "DataCollatorWithPadding, the padded ids still end up on the right, so generation "
        "produces garbage after the first token."
    ),
}
GENUINE_ANSWER = (
    "Set tokenizer.padding_side = 'left' on the tokenizer object before you build the "
    "collator: the collator reads the attribute, not the argument of the call."
)
JUNK_ANSWERS = (
    "0",
    "1",
    "x",
    "null",
    "0 0 0 0 0 0",
    "null null null null null",
    "1 2 3 4 5 6 7 8 9 10 ok go up do",
)
PLAUSIBLE_BODY = (
    "Loading the dataset from the hub fails with a timeout error every single time I try it."
)


def fuzz_tickets(n: int, seed: int = 19) -> list[dict]:
    """Tickets as a fuzzer writes them: ``Title: 1``, ``0``, ``a`` and random short strings."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + string.punctuation + " "
    fixed = [
        {"title": "Title: 1"},
        {"title": "0"},
        {"title": "a"},
        {"title": "Title: 1", "body": "0"},
        {"title": "1", "body": PLAUSIBLE_BODY},  # long enough: its answer must stop it
    ]
    randoms = [
        {
            "title": "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))).strip()
            or "z",
            "body": rng.choice(["", "0", "Title: 1", "a b c"]),
        }
        for _ in range(n - len(fixed))
    ]
    return [{**t, "generate": False} for t in fixed + randoms]


def app_client(store: Store) -> TestClient:
    settings = serve_settings(api_token=TOKEN, warm=False, generator="none")
    return TestClient(create_app(store, settings))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def add_ticket(store: Store, title: str, body: str, domain: str = "r") -> str:
    """A stored ticket, as the service stores one (no answer: generation was off)."""
    tid = str(uuid.uuid4())
    with store.begin() as conn:
        conn.execute(
            schema.tickets.insert().values(
                id=tid,
                domain=domain,
                title=title,
                body=body,
                labels="[]",
                similar="[]",
                created_at=datetime(2022, 11, 2, tzinfo=UTC),
            )
        )
    return tid


def feedback_rows(store: Store, ticket_id: str) -> list:
    f = schema.feedback
    with store.begin() as conn:
        return conn.execute(select(f).where(f.c.ticket_id == ticket_id).order_by(f.c.id)).all()


@pytest.fixture
def seeded(store: Store, tmp_path) -> Store:
    seed_store(store, tmp_path)
    return store


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("0", "empty"),
        ("x", "empty"),
        ("null", "empty"),
        ("Title: 1", "empty"),
        ("null null null null null", "noise"),
        ("fixed it fixed it fixed it", "noise"),
        ("1 2 3 4 5 6 7 8 9 10 ok go up do", "language"),
        ("0x1f 0x2e 0x3d 0x4c 0x5b 42 17 99 be it so on", "language"),
        ("Pass split='train' to load_dataset.", None),
        (GENUINE_ANSWER, None),
        ("Install the soundfile package.", None),
        ("Pass <GITHUB_TOKEN>? No: set timeout=30.", None),
    ],
)
def test_the_answer_gate(answer: str, reason: str | None) -> None:
    assert answer_reject_reason(answer) == reason


def test_one_row_per_ticket_and_client_a_later_post_replaces_it(store: Store) -> None:
    tid = add_ticket(store, GENUINE_TICKET["title"], GENUINE_TICKET["body"])
    record(store, tid, "down", "0", client="token:fuzzer")
    record(store, tid, "up", "1", True, client="token:fuzzer")
    last = record(store, tid, "up", "x", True, client="token:fuzzer")
    [row] = feedback_rows(store, tid)
    assert (row.corrected_answer, row.rating, row.client) == ("x", "up", "token:fuzzer")
    assert row.id == last["id"] and last["client"] == "token:fuzzer"
    record(store, tid, "down", client="token:support")
    assert [r.client for r in feedback_rows(store, tid)] == ["token:fuzzer", "token:support"]
    arms = win_rates(store)["r"]["arms"]["none"]
    assert (arms["up"], arms["down"]) == (0, 1)  # one ticket, its latest rating
    record(store, tid, "up", "y", client="token:fuzzer")  # replaced: the latest row again
    assert [r.client for r in feedback_rows(store, tid)] == ["token:support", "token:fuzzer"]
    arms = win_rates(store)["r"]["arms"]["none"]
    assert (arms["up"], arms["down"]) == (1, 0)
    with pytest.raises(FeedbackError):
        record(store, "no-such-ticket", "up", client="token:fuzzer")


def test_feedback_without_a_client_keeps_one_row_per_post(store: Store) -> None:
    tid = add_ticket(store, GENUINE_TICKET["title"], GENUINE_TICKET["body"])
    record(store, tid, "down")
    record(store, tid, "up", GENUINE_ANSWER)
    assert [r.client for r in feedback_rows(store, tid)] == [None, None]
    [ex] = feedback_examples(store, "r")
    assert ex.answer == GENUINE_ANSWER and ex.meta["client"] == NO_CLIENT


def test_the_latest_row_decides_whoever_sent_it(store: Store) -> None:
    tid = add_ticket(store, GENUINE_TICKET["title"], GENUINE_TICKET["body"])
    record(store, tid, "down", GENUINE_ANSWER, client="token:support")
    [ex] = feedback_examples(store, "r")
    assert ex.meta["client"] == "token:support"
    record(store, tid, "down", client="token:other")  # later, and teaches nothing
    assert feedback_examples(store, "r") == []
    record(store, tid, "down", GENUINE_ANSWER, client="token:support")  # replaces its own row
    [ex] = feedback_examples(store, "r")
    assert ex.meta["client"] == "token:support" and len(feedback_rows(store, tid)) == 2


def test_concurrent_posts_of_one_client_leave_one_row(store: Store) -> None:
    tid = add_ticket(store, GENUINE_TICKET["title"], GENUINE_TICKET["body"])
    errors: list[BaseException] = []

    def post(k: int) -> None:
        try:
            for i in range(5):
                record(store, tid, "up", f"answer {k}-{i}", client="token:racer")
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=post, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(feedback_rows(store, tid)) == 1


def test_a_concurrent_insert_makes_the_post_an_update_on_postgres(pg_store: Store) -> None:
    """Between this post's delete and insert, the same client's other post commits its row:
    the unique index refuses the insert, and the post becomes an update of that row."""
    tid = add_ticket(pg_store, GENUINE_TICKET["title"], GENUINE_TICKET["body"])
    raced: list[int] = []

    def other_post_commits_first(conn, _cursor, statement, _params, _context, _many):
        if raced or not statement.lstrip().upper().startswith("INSERT INTO FEEDBACK"):
            return
        raced.append(1)
        with pg_store.engine.begin() as other:
            other.execute(
                schema.feedback.insert().values(
                    ticket_id=tid,
                    domain="r",
                    rating="down",
                    corrected_answer="the other post",
                    created_at=datetime.now(UTC),
                    client="token:racer",
                )
            )

    event.listen(pg_store.engine, "before_cursor_execute", other_post_commits_first)
    try:
        out = record(pg_store, tid, "up", GENUINE_ANSWER, True, client="token:racer")
    finally:
        event.remove(pg_store.engine, "before_cursor_execute", other_post_commits_first)
    assert raced == [1]
    [row] = feedback_rows(pg_store, tid)
    assert (row.rating, row.corrected_answer, row.resolved) == ("up", GENUINE_ANSWER, True)
    assert out["id"] == row.id


def test_replayed_fuzz_junk_teaches_nothing(seeded: Store) -> None:
    fuzzer = create_token(seeded, "fuzzer", ["write"])
    support = create_token(seeded, "support", ["read", "write"])
    junk = fuzz_tickets(40)
    with app_client(seeded) as c:
        ids = []
        for ticket in junk:
            r = c.post("/v1/tickets", json=ticket, headers=bearer(fuzzer))
            assert r.status_code == 200, r.text
            ids.append(r.json()["id"])
        for i, tid in enumerate(ids):
            body = {"rating": "up", "corrected_answer": JUNK_ANSWERS[i % 7], "resolved": True}
            r = c.post(f"/v1/tickets/{tid}/feedback", json=body, headers=bearer(fuzzer))
            assert r.status_code == 201, r.text
        for answer in ("0", "0", "1"):  # three posts on one ticket from one token: one row
            body = {"rating": "up", "corrected_answer": answer, "resolved": True}
            c.post(f"/v1/tickets/{ids[0]}/feedback", json=body, headers=bearer(fuzzer))
        assert len(c.get(f"/v1/tickets/{ids[0]}", headers=bearer(support)).json()["feedback"]) == 1
        genuine = c.post(
            "/v1/tickets", json={**GENUINE_TICKET, "generate": False}, headers=bearer(support)
        ).json()["id"]
        fixed = {"rating": "down", "corrected_answer": GENUINE_ANSWER}
        r = c.post(f"/v1/tickets/{genuine}/feedback", json=fixed, headers=bearer(support))
        assert r.status_code == 201, r.text
    [row] = feedback_rows(seeded, ids[0])
    assert (row.corrected_answer, row.client) == ("1", "token:fuzzer")

    result = build_dataset(seeded)
    taught = [e for e in iter_examples(result.path, "qa") if e.solution_source == SOURCE]
    assert [e.meta["ticket_id"] for e in taught] == [genuine]  # none of the junk
    assert taught[0].answer == GENUINE_ANSWER and taught[0].meta["client"] == "token:support"
    fb = result.manifest["tasks"]["qa"]["feedback"]
    assert fb["examples"] == 1 and fb["by_client"] == {"token:support": 1}
    assert fb["rejected_by_client"] == {"token:fuzzer": len(junk)}  # one row per ticket
    assert sum(fb["rejected"].values()) == len(junk)
    assert {"question_empty", "answer_empty"} <= set(fb["rejected"])
    assert fb["rejected"].keys() <= {
        "question_empty",
        "question_noise",
        "answer_empty",
        "answer_noise",
        "answer_language",
    }

    from adaptune.cli.dataset import app as dataset_cli

    shown = CliRunner().invoke(dataset_cli, ["show", "--json"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["tasks"]["qa"]["feedback"] == fb
    text = CliRunner().invoke(dataset_cli, ["show"], env={"COLUMNS": "200"}).stdout
    assert "## Feedback" in text
    assert "| token:support | 1 | 0 |" in text
    assert f"| token:fuzzer | 0 | {len(junk)} |" in text


def test_one_answer_on_many_tickets_and_copied_questions_teach_once(seeded: Store) -> None:
    topics = ("streaming shards", "audio decoding", "image casting", "arrow caching")
    tickets = [
        add_ticket(
            seeded,
            f"Problem number {k} with {topic} in the loader",
            f"Whenever I use {topic} the loader stops with an unexplained error after "
            f"{k + 2} minutes, on every machine we have tried so far.",
        )
        for k, topic in enumerate(topics)
    ]
    for tid in tickets:  # one answer posted on every ticket
        record(seeded, tid, "down", "Upgrade the library and restart the kernel.", client="token:x")
    issue = next(r for r in rows(6) if r["number"] == 3)
    copy = add_ticket(seeded, issue["title"], issue["body"])  # an issue's question, copied
    record(seeded, copy, "down", GENUINE_ANSWER, client="token:y")

    rejected: Counter = Counter()
    taught = feedback_examples(seeded, "r", rejected)
    assert len(taught) == 5 and not rejected  # each passes the gate on its own
    result = build_dataset(seeded)
    fb = result.manifest["tasks"]["qa"]["feedback"]
    assert fb["by_client"] == {"token:x": 1}
    assert fb["rejected"] == {"duplicate_answer": 3, "duplicate_question": 1}
    assert fb["rejected_by_client"] == {"token:x": 3, "token:y": 1}
    kept = [e for e in result.examples["qa"] if e.solution_source == SOURCE]
    assert [e.meta["ticket_id"] for e in kept] == [tickets[0]]  # the earliest copy stays
    assert dedupe_feedback([], ["q"], Counter()) == []
