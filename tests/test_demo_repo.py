"""``adaptune demo --repo``: the real command, as a process, against a fake GitHub on a real
local HTTP server.

The fake is the one the GitHub client is tested against (``test_ingest_github``); the base model
is the tiny random Llama written as a Hugging Face folder, so the whole demo takes seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adaptune.pipeline.demos import choose_windows
from local_server import LocalServer
from test_ingest_github import REPO, TOKEN, FakeGitHub, comment_obj, issue_obj
from tiny_model import save_tiny

PARTS = "loader cache shard parquet tokenizer stream arrow column mapper schema".split()  # noqa: SIM905
ERRORS = "KeyError ValueError OSError TypeError IndexError RuntimeError".split()  # noqa: SIM905
DAY = 24.0
"""Hours in a day: ``issue_obj`` places rows by hours after 2024-01-01."""


def solved(n: int, day: float) -> list[dict[str, Any]]:
    """Issue ``n``, closed on ``day`` of 2024, and the merged PR that says it fixes it."""
    part, other = PARTS[n % len(PARTS)], PARTS[(3 * n + 1) % len(PARTS)]
    error = ERRORS[n % len(ERRORS)]
    issue = {
        **issue_obj(n, day * DAY),
        "title": f"{part} raises {error} {n} when reading {other} files",
        "body": f"Reading a {other} file through the {part} raises {error}: code {n * 37}. "
        f"It worked in the previous release with the same {other} data, case {n}.",
    }
    pr = {
        **issue_obj(100 + n, day * DAY, pr=True),
        "title": f"Guard the {part} against empty {other} input ({n})",
        "body": f"Fixes #{n}. The {part} now checks the {other} header before it reads "
        f"shard {n}, so {error} is no longer raised.",
    }
    return [issue, pr]


def answered(n: int, day: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Issue ``n`` closed on ``day`` with no PR; a maintainer's comment holds the answer."""
    part = PARTS[n % len(PARTS)]
    issue = {
        **issue_obj(n, day * DAY, comments=1),
        "title": f"How do I configure the {part} for remote storage {n}",
        "body": f"I want the {part} to read from a bucket instead of a local folder, "
        f"but it ignores my settings (attempt {n}).",
    }
    comment = {
        **comment_obj(1000 + n, day * DAY - 1),
        "body": f"Set the storage_options argument of the {part} to your bucket credentials.",
    }
    return issue, comment


def fixed_over(days: list[float], first: int = 1) -> list[dict[str, Any]]:
    """One solved issue (and its PR) per day, numbered from ``first``."""
    return [row for i, day in enumerate(days) for row in solved(first + i, day)]


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub(page_size=20)
    with LocalServer(fake) as server:
        fake.url, fake.server = server.url, server
        yield fake


def adaptune(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m adaptune ARGS`` on one thread (the machine is shared), output captured."""
    env = {
        **os.environ,
        "COLUMNS": "200",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return subprocess.run(
        [sys.executable, "-m", "adaptune", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


@pytest.mark.timeout(600)
def test_demo_on_a_repository_trains_evaluates_and_reports(
    github: FakeGitHub, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nine fixes a quarter in 2024Q1–Q3 (held out by hash: 7; 10, 15, 16; 25, 27), two issues
    # answered by a maintainer in Q3, two fixes in Q4 (none held out: it cannot be measured,
    # so the quick demo's two windows are Q2 and Q3), one open issue.
    days = [10 + 6 * k for k in range(9)] + [100 + 6 * k for k in range(9)]
    days += [190 + 6 * k for k in range(9)] + [280, 290]
    github.rows = [*fixed_over(days), issue_obj(90, 300, state="open")]
    for n, day in ((40, 230), (41, 240)):
        issue, comment = answered(n, day)
        github.rows.append(issue)
        github.comments[n] = [comment]
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    model = save_tiny(tmp_path / "tiny")
    proc = adaptune(
        "demo", "--repo", REPO, "--api-url", github.url, "--model", str(model), "--quick",
        "--comments",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"ingested github:{REPO}: 61 rows (61 new" in proc.stdout
    assert "of domain widgets: 31 qa pairs in 4 windows" in proc.stdout
    assert "domain widgets: training on windows 2024Q2, 2024Q3" in proc.stdout
    assert "BWT" in proc.stdout and "style-control" in proc.stdout
    assert TOKEN not in proc.stdout + proc.stderr
    assert {r.headers.get("authorization") for r in github.requests} == {f"Bearer {TOKEN}"}
    assert sorted(github.comment_paths()) == [
        f"/repos/{REPO}/issues/40/comments",
        f"/repos/{REPO}/issues/41/comments",
    ]
    report = Path(proc.stdout.rsplit("report:", 1)[1].split()[0])
    assert report.name == "report.html" and report.is_file()
    assert report.is_relative_to(workspace)
    metrics = json.loads((report.parent / "metrics.json").read_text())
    assert metrics["domain"] == "widgets" and metrics["windows"] == ["2024Q2", "2024Q3"]
    assert metrics["config"]["model"] == str(model)
    assert metrics["generation"] == {"backend": "transformers", "examples": 3}
    for label in ("adaptive", "from-base", "cumulative"):
        strategy = metrics["strategies"][label]
        assert len(strategy["versions"]) == 2
        assert np.isfinite(strategy["R"]).all() and np.isfinite(strategy["acc"])
    (build,) = (workspace / "datasets" / "widgets").iterdir()
    sources = json.loads((build / "manifest.json").read_text())["tasks"]["qa"]["solution_sources"]
    assert sources == {"pr": 29, "maintainer_comment": 2}


@pytest.mark.parametrize(
    ("rows", "comments", "found"),
    [
        (fixed_over([10, 20, 30, 40, 50]), False, "found 5 qa pairs in 1 window "),
        ([issue_obj(n, n) for n in range(1, 6)], True, "found 0 qa pairs in 0 windows;"),
    ],
    ids=["one-quarter", "no-fixes"],
)
def test_a_repository_with_too_few_fixes_is_a_clear_error(
    github: FakeGitHub, workspace: Path, rows: list[Any], comments: bool, found: str
) -> None:
    github.rows = rows
    flag = "--comments" if comments else "--no-comments"
    proc = adaptune("demo", "--repo", REPO, "--api-url", github.url, "--quick", flag)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = error_lines(proc)
    assert line.startswith(f"error: {REPO}: {found}")
    assert "at least 2 consecutive windows with both training and held-out" in line
    assert "Fixes #N" in line
    assert ("Pass --comments so that maintainers' answers count" in line) is not comments
    assert not (workspace / "reports").exists()


def test_a_missing_repository_is_one_red_line(github: FakeGitHub) -> None:
    proc = adaptune("demo", "--repo", "acme/gone", "--api-url", github.url, "--quick")
    assert proc.returncode == 1 and proc.stdout == ""
    (line,) = error_lines(proc)
    assert line.startswith(f"error: HTTP 404 from {github.url}/repos/acme/gone/issues?")
    assert "Not Found" in line and "check the repository" in line
    assert len(github.requests) == 1


def test_github_options_need_a_repository() -> None:
    proc = adaptune("demo", "--comments")
    assert proc.returncode == 2
    assert error_lines(proc) == [
        "error: --api-url, --token and --comments go with --repo OWNER/REPO."
    ]


def w(train: int, heldout: int) -> dict[str, Any]:
    return {"name": f"{train}+{heldout}", "train": train, "heldout": heldout}


@pytest.mark.parametrize(
    ("windows", "most", "span"),
    [
        ([w(5, 1), w(5, 1), w(5, 1), w(5, 1), w(5, 1)], 4, (2, 5)),
        ([w(5, 1), w(5, 1), w(5, 1)], 2, (2, 3)),
        ([w(5, 1), w(4, 1)], 4, (1, 2)),
        ([w(5, 1), w(4, 1), w(2, 0)], 4, (1, 2)),  # nothing held out: it cannot be measured
        ([w(5, 1), w(4, 1), w(0, 1)], 4, (1, 2)),  # nothing to train on
        ([w(3, 1), w(3, 1), w(0, 1), w(3, 1)], 4, (1, 2)),  # a lone newest window cannot chain
        ([w(3, 1), w(3, 1), w(3, 1), w(3, 0), w(3, 1), w(3, 1)], 4, (5, 6)),
        ([w(9, 2)], 4, None),
        ([w(3, 1), w(3, 0), w(3, 1), w(3, 0)], 4, None),
        ([w(3, 1), w(0, 2), w(3, 1)], 4, None),
        ([], 4, None),
    ],
)
def test_choose_windows_picks_the_newest_trainable_run(
    windows: list[dict[str, Any]], most: int, span: tuple[int, int] | None
) -> None:
    assert choose_windows(windows, most) == span
