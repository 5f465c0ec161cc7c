"""``ingest file`` and ``ingest gh-export``: real dumps, bad input, strictness."""

from __future__ import annotations

import gzip
import json

import pytest

from adaptune.errors import IngestError, InputRejected
from adaptune.ingest import ingest
from adaptune.ingest.files import file_source
from adaptune.ingest.gh_export import gh_export_source
from adaptune.ingest.normalize import MAX_BODY_CHARS
from adaptune.store.issues import select_comments, select_issues
from conftest import shared_file


def rest(number: int, **kw: object) -> dict:
    obj = {
        "number": number,
        "title": f"t{number}",
        "body": "b",
        "state": "open",
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-02T00:00:00Z",
        "html_url": f"https://github.com/o/r/issues/{number}",
        "labels": [{"name": "bug"}],
        "user": {"login": "u"},
    }
    obj.update(kw)
    return obj


def write_lines(path, lines: list[bytes | str | dict], gz: bool = False) -> None:
    data = b""
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line)
        data += (line.encode() if isinstance(line, str) else line) + b"\n"
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.mark.parametrize(
    ("name", "rows", "prs"),
    [
        ("github/huggingface-datasets.issues.jsonl.gz", 6419, 3851),
        ("github/vllm.issues-sample.jsonl.gz", 1206, 0),
        ("github/llama.cpp.issues-sample.jsonl.gz", 1541, 0),
    ],
)
def test_shared_dumps_ingest_with_exact_counts(store, name, rows, prs):
    path = shared_file(name)
    report = ingest(file_source(path), store)
    assert (report.seen, report.inserted, report.rejected) == (rows, rows, [])
    status = store.status()
    assert status["issues"] == rows - prs and status["pull_requests"] == prs
    again = ingest(file_source(path), store)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, rows)
    assert store.status()["issues"] == rows - prs
    assert status["repos"][0]["last_synced"] is not None


def test_bad_rows_are_rejected_by_line_and_good_rows_stored(store, tmp_path):
    path = tmp_path / "mixed.jsonl"
    write_lines(
        path,
        [
            rest(1),
            "{not json",
            b'{"number": 3, "title": "bad \xff utf8"}',
            rest(4, title=None),
            rest(5, body=None),
            rest(6, state="weird"),
            "",
            rest(7, body="x" * (5 * 1024 * 1024)),
        ],
    )
    report = ingest(file_source(path), store)
    reasons = {r.where.rsplit(":", 1)[1]: r.reason for r in report.rejected}
    assert set(reasons) == {"2", "3", "4", "6"}
    assert "malformed JSON" in reasons["2"] and "UTF-8" in reasons["3"]
    assert "title" in reasons["4"] and "state" in reasons["6"]
    with store.begin() as conn:
        got = {i.number: i for i in select_issues(conn, with_raw=True)}
    assert sorted(got) == [1, 5, 7]
    assert got[5].body is None
    assert len(got[7].body) < MAX_BODY_CHARS + 200 and "characters cut" in got[7].body
    assert len(got[7].raw["body"]) == 5 * 1024 * 1024  # the raw JSON keeps everything


def test_strict_stores_nothing_when_any_row_is_bad(store, tmp_path):
    path = tmp_path / "strict.jsonl"
    write_lines(path, [rest(1), "{oops", rest(2)])
    with pytest.raises(InputRejected, match=r"strict.jsonl:2"):
        ingest(file_source(path, strict=True), store)
    assert store.status()["issues"] == 0


def test_gzip_and_json_array_and_truncated_gzip(store, tmp_path):
    gz = tmp_path / "a.jsonl.gz"
    write_lines(gz, [rest(1), rest(2)], gz=True)
    assert ingest(file_source(gz), store).inserted == 2
    arr = tmp_path / "b.json"
    arr.write_text(json.dumps([rest(3), rest(4)]))
    assert ingest(file_source(arr), store).inserted == 2
    cut = tmp_path / "c.jsonl.gz"
    whole = gzip.compress(b"".join(json.dumps(rest(n)).encode() + b"\n" for n in range(5, 400)))
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    report = ingest(file_source(cut), store)
    assert report.rejected and "truncated" in report.rejected[-1].reason
    assert report.inserted > 0  # what was readable before the cut is kept


def test_unreadable_files_are_clear_errors(store, tmp_path):
    with pytest.raises(IngestError, match="no such file"):
        ingest(file_source(tmp_path / "missing.jsonl"), store)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"number": 1},')
    with pytest.raises(IngestError, match="malformed JSON"):
        ingest(file_source(bad), store)


GH_EXPORT = [
    {
        "number": 12,
        "title": "Crash when loading",
        "body": "It crashes",
        "labels": [{"id": "LA_1", "name": "bug", "description": "", "color": "d73a4a"}],
        "state": "CLOSED",
        "createdAt": "2024-03-01T10:00:00Z",
        "closedAt": "2024-03-05T10:00:00Z",
        "author": {"id": "U_1", "is_bot": False, "login": "alice", "name": "Alice"},
        "comments": [
            {
                "id": "IC_kwDOAbc",
                "author": {"login": "maintainer"},
                "authorAssociation": "MEMBER",
                "body": "Fixed in 1.2",
                "createdAt": "2024-03-06T10:00:00Z",
                "includesCreatedEdit": False,
                "isMinimized": False,
                "minimizedReason": "",
                "reactionGroups": [],
                "url": "https://github.com/o/r/issues/12#issuecomment-1",
                "viewerDidAuthor": False,
            }
        ],
        "url": "https://github.com/o/r/issues/12",
    },
    {
        "number": 13,
        "title": "Open one",
        "body": "",
        "labels": [],
        "state": "OPEN",
        "createdAt": "2024-03-02T10:00:00Z",
        "closedAt": None,
        "author": {"login": "bob"},
        "comments": [],
        "url": "https://github.com/o/r/issues/13",
    },
]


def test_gh_export_becomes_issues_and_comments(store, tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(GH_EXPORT))
    report = ingest(gh_export_source(path), store)
    assert (report.inserted, report.comments, report.rejected) == (2, 1, [])
    with store.begin() as conn:
        got = {i.number: i for i in select_issues(conn)}
        (comment,) = select_comments(conn, "github", "o/r", 12)
    assert got[12].state == "closed" and got[12].labels == ("bug",)
    assert got[12].author == "alice" and got[12].comments_count == 1
    # no updatedAt in the export: the newest comment marks the last change
    assert got[12].updated_at.isoformat().startswith("2024-03-06")
    assert comment.author_association == "MEMBER" and comment.body == "Fixed in 1.2"
    again = ingest(gh_export_source(path), store)
    assert (again.inserted, again.updated, again.comments) == (0, 0, 0)


def test_gh_export_rejects_rows_without_url(store, tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps([{**GH_EXPORT[1], "url": None}, GH_EXPORT[0]]))
    report = ingest(gh_export_source(path), store)
    assert report.inserted == 1
    assert "url" in report.rejected[0].reason and report.rejected[0].where.endswith("[0]")
