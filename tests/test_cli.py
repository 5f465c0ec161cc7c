"""The command line as a user runs it: a real process, its output and its exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import shared_file


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "adaptune", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=1200,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_status_json_follows_the_contract_on_an_empty_store(workspace):
    data = json.loads(run("status", "--json").stdout)
    assert data["issues"] == 0 and data["pull_requests"] == 0 and data["comments"] == 0
    assert data["repos"] == []
    assert data["home"] == str(workspace.resolve())
    assert data["database"] == f"sqlite:///{workspace.resolve() / 'adaptune.db'}"


def test_ingest_file_then_status_json(workspace):
    path = shared_file("github/vllm.issues-sample.jsonl.gz")
    proc = run("ingest", "file", str(path), "--json")
    report = json.loads(proc.stdout)
    assert report["inserted"] == 1206 and report["rejected"] == []
    data = json.loads(run("status", "--json").stdout)
    (repo,) = data["repos"]
    assert repo == {
        "source": "github",
        "repo": "vllm-project/vllm",
        "issues": 1206,
        "pull_requests": 0,
        "last_synced": repo["last_synced"],
    }
    assert repo["last_synced"] is not None
    domains = json.loads(run("domains", "list", "--json").stdout)
    assert domains == [{"name": "vllm", "sources": ["github:vllm-project/vllm"]}]


def test_errors_are_one_red_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"number": 1, "title": "x", "state": "open", "created_at": "2024-01-01"}\n{x\n')
    proc = run("ingest", "file", str(bad), check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "bad.jsonl:2" in proc.stderr and "rejected" in proc.stderr
    proc = run("ingest", "file", str(tmp_path / "nope.jsonl"), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        f"error: {tmp_path / 'nope.jsonl'}: no such file."
    ]
    proc = run("--debug", "ingest", "file", str(tmp_path / "nope.jsonl"), check=False)
    assert "Traceback" in proc.stderr


def test_domains_add_and_ingest_into_a_named_domain(tmp_path):
    run("domains", "add", "llm", "--source", "github:ggml-org/llama.cpp")
    path = tmp_path / "one.jsonl"
    path.write_text(
        json.dumps(
            {
                "number": 5,
                "title": "t",
                "state": "open",
                "created_at": "2024-01-01T00:00:00Z",
                "html_url": "https://github.com/vllm-project/vllm/issues/5",
            }
        )
    )
    run("ingest", "file", str(path), "--domain", "llm")
    domains = json.loads(run("domains", "list", "--json").stdout)
    assert domains == [
        {"name": "llm", "sources": ["github:ggml-org/llama.cpp", "github:vllm-project/vllm"]}
    ]
    proc = run("domains", "add", "Bad Name", check=False)
    assert proc.returncode != 0 and "not a domain name" in proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_demo_runs_on_the_bundled_sample(workspace):
    proc = run("demo", "--quick")
    assert "ingested" in proc.stdout and "qa pairs" in proc.stdout
    assert "BWT" in proc.stdout and "style-control" in proc.stdout
    assert "triage: " in proc.stdout and "duplicates: " in proc.stdout
    report = proc.stdout.rsplit("report:", 1)[1].split()[0]
    assert report.endswith("report.html") and os.path.exists(report)
    with open(report.replace("report.html", "metrics.json")) as fh:
        generation = json.load(fh)["generation"]
    assert generation["examples"] == 3 and generation["backend"] in ("llamacpp", "transformers")
    data = json.loads(run("status", "--json").stdout)
    assert data["issues"] > 1000 and data["pull_requests"] > 300
    versions = json.loads(run("adapters", "list", "--json").stdout)
    assert {v["strategy"] for v in versions} >= {"adaptive", "from-base", "cumulative"}
