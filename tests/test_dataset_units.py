"""Windows, splits, label tables, the quality gate, dedupe and solutions: small, exact cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adaptune.dataset.dedupe import has_near_copy, near_duplicate_groups
from adaptune.dataset.gate import is_bot, is_stale_close, reject_reason
from adaptune.dataset.labels import table_for, triage_type
from adaptune.dataset.solutions import clean_pr_text, from_comments, pr_fixes, solution_for
from adaptune.dataset.windows import assign_windows, is_heldout, parse_window_spec
from adaptune.errors import ConfigError
from adaptune.types import Comment, Example, Issue

T0 = datetime(2021, 1, 15, tzinfo=UTC)
BODY = "Loading the dataset fails with a KeyError when streaming is enabled on windows"


def issue(number: int, **kw: object) -> Issue:
    fields = {
        "source": "github",
        "repo": "o/r",
        "number": number,
        "title": f"Problem number {number} with load_dataset",
        "body": BODY,
        "state": "closed",
        "created_at": T0,
        "updated_at": T0,
        "closed_at": T0 + timedelta(days=2),
    }
    fields.update(kw)
    return Issue(**fields)  # type: ignore[arg-type]


def ex(i: int, when: datetime) -> Example:
    return Example(
        id=f"qa:x#{i}",
        task="qa",
        domain="d",
        issue=f"x#{i}",
        question="q",
        answer="a",
        known_at=when,
    )


def test_quarter_month_and_count_windows():
    rows = [ex(i, T0 + timedelta(days=40 * i)) for i in range(6)]
    placed, windows = assign_windows(rows, "quarter", 0.0)
    assert [w.name for w in windows] == ["2021Q1", "2021Q2", "2021Q3"]
    # Jan 15, Feb 24 | Apr 5, May 15, Jun 24 | Aug 3
    assert [e.window for e in placed] == [
        "2021Q1",
        "2021Q1",
        "2021Q2",
        "2021Q2",
        "2021Q2",
        "2021Q3",
    ]
    _placed, windows = assign_windows(rows, "month", 0.0)
    assert windows[0].name == "2021-01" and len(windows) == 6
    placed, windows = assign_windows(rows, parse_window_spec("4"), 0.0)
    assert [w.name for w in windows] == ["w001", "w002"]
    assert windows[0].start == T0 and windows[0].end == T0 + timedelta(days=120)
    with pytest.raises(ConfigError):
        parse_window_spec("weekly")


def test_split_is_deterministic_and_near_the_share():
    keys = [f"github:o/r#{n}" for n in range(2000)]
    held = [k for k in keys if is_heldout(k, 0.2)]
    assert 0.17 < len(held) / len(keys) < 0.23
    assert held == [k for k in keys if is_heldout(k, 0.2)]
    assert not any(is_heldout(k, 0.0) for k in keys)


def test_label_tables_are_per_project_and_ignore_process_labels():
    vllm = table_for(["vllm-project/vllm"])
    assert triage_type(["bug", "stale"], vllm) == "bug"
    assert triage_type(["feature request"], vllm) == "feature"
    assert triage_type(["stale"], vllm) is None
    assert triage_type(["bug", "usage"], vllm) is None  # two types disagree
    llama = table_for(["ggml-org/llama.cpp"])
    assert triage_type(["bug-unconfirmed", "medium severity"], llama) == "bug"
    assert triage_type(["duplicate", "enhancement"], table_for(["huggingface/datasets"])) == (
        "feature"
    )
    assert triage_type([], table_for(["x/y"]), issue_type="Bug") == "bug"


def test_label_table_override_file(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text('{"kind/bug": "bug"}')
    assert table_for(["vllm-project/vllm"], path) == {"kind/bug": "bug"}
    path.write_text("[1]")
    with pytest.raises(ConfigError, match="label table"):
        table_for([], path)


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"author": "dependabot[bot]"}, "bot"),
        ({"author": "github-actions"}, "bot"),
        ({"labels": ("stale",), "state_reason": "not_planned"}, "stale"),
        ({"labels": ("stale",), "state_reason": None}, "stale"),
        ({"title": "help", "body": None}, "empty"),
        (
            {"title": "test", "body": "this is just a test of the issue tracker please ignore"},
            "noise",
        ),
        ({}, None),
        ({"labels": ("stale",), "state_reason": "completed"}, None),
    ],
)
def test_quality_gate_reasons(kw, reason):
    assert reject_reason(issue(1, **kw)) == reason


def test_bots_and_stale_helpers():
    assert is_bot("renovate[bot]") and is_bot("some-bot") and not is_bot("botanist")
    assert not is_stale_close(issue(1, labels=("stale",), state="open"))


def test_near_duplicates_keep_the_earliest_and_leaks_are_found():
    a = "datasets load_dataset raises KeyError: 'train' when the split is missing from the config"
    b = a + " again"
    c = "pyarrow ArrowInvalid when casting a list column of nested structs in map with batched"
    assert near_duplicate_groups([a, c, b]) == [0, 1, 0]
    assert list(has_near_copy([b, "something entirely different here"], [a, c])) == [True, False]


PR_BODY = """Fixes #12.

<!-- Thank you for contributing! -->
The streaming reader now skips empty shards instead of raising KeyError.

- [x] I have added tests
- [ ] Docs

Co-authored-by: someone <someone@example.com>

---
The documentation is not available anymore as the PR was closed or merged.
"""


def test_pr_solutions_link_and_clean():
    pr = issue(
        30,
        is_pull_request=True,
        merged_at=T0 + timedelta(days=3),
        title="Fix streaming",
        body=PR_BODY,
    )
    unmerged = issue(31, is_pull_request=True, merged_at=None, body="Fixes #12")
    fixes = pr_fixes([pr, unmerged])
    assert [p.number for p in fixes[("github", "o/r", 12)]] == [30]
    sol = solution_for(issue(12), fixes)
    assert sol is not None and sol.source == "pr" and sol.ref == "github:o/r#30"
    assert sol.known_at == T0 + timedelta(days=3)
    text = clean_pr_text(pr.title, pr.body)
    assert "skips empty shards" in text
    for gone in ("<!--", "[x]", "Co-authored-by", "documentation is not available"):
        assert gone not in text
    assert solution_for(issue(12, state="open"), fixes) is None


def test_maintainer_comment_is_a_solution_when_no_pr():
    def comment(cid: str, who: str, assoc: str, days: int, body: str) -> Comment:
        when = T0 + timedelta(days=days)
        return Comment("github", "o/r", 5, cid, body, when, when, who, assoc)

    comments = [
        comment("1", "maint", "MEMBER", 1, "Please upgrade to 2.3, the bug is fixed there."),
        comment("2", "user", "NONE", 1, "Thanks, that works for me now, closing this."),
        comment("3", "maint", "MEMBER", 5, "A late remark after the close, not the answer."),
    ]
    sol = from_comments(issue(5), comments)
    assert sol is not None and sol.source == "maintainer_comment" and "upgrade" in sol.text
    assert from_comments(issue(5), comments[1:2]) is None
