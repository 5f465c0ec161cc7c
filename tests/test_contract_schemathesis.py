"""Schemathesis with every phase against a real ``adaptune serve``: 0 server errors, 0 schema
violations.

The outside probe ran ``schemathesis run`` with the examples, coverage, fuzzing and stateful
phases, positive and negative data, and every check. This is a bounded run of the same: a real
server process on a seeded store (reads closed, both webhook secrets set, the webhook bodies
signed by ``schemathesis_hooks`` so that they reach the parsers), every phase, ``--mode all``,
``--checks all``. Excluded: ``positive_data_acceptance`` (a schema-valid body naming a domain or
ticket that does not exist is refused with 422/404 by design), and ``ignored_auth`` for the
public routes is not an issue since they are documented without security. The JSON report must
list no failure and no error; ``bench``-sized runs use the same command with a larger ``-n``
(``docs/reliability.md``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from serve_fixtures import SECRET, TOKEN, seed_store

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("ADAPTUNE_CONTRACT_EXAMPLES", "50"))
"""Test cases per operation and phase (the probe used far more; see docs/reliability.md)."""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _schemathesis() -> str | None:
    found = Path(sys.executable).parent / "schemathesis"
    return str(found) if found.exists() else shutil.which("schemathesis")


@pytest.mark.timeout(900)
def test_every_phase_finds_no_server_error_and_no_schema_violation(store, tmp_path, workspace):
    binary = _schemathesis()
    if binary is None:
        pytest.skip("schemathesis is not installed (adaptune[dev] installs it)")
    seed_store(store, tmp_path)
    store.close()
    port = _port()
    env = {
        **os.environ,
        "ADAPTUNE_HOME": str(workspace),
        "ADAPTUNE_API_TOKEN": TOKEN,
        "ADAPTUNE_GENERATOR": "none",
        "ADAPTUNE_GITHUB_WEBHOOK_SECRET": SECRET,
        "ADAPTUNE_JIRA_WEBHOOK_SECRET": SECRET,
        "ADAPTUNE_OPEN_READS": "false",
        # Bodies over the limit get 413, which schemathesis does not count as refusing negative
        # data: a larger limit lets oversized fields reach validation (a 422 naming them).
        "ADAPTUNE_MAX_BODY_BYTES": "8000000",
        "PYTHONPATH": str(ROOT / "src"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "adaptune", "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    report = tmp_path / "schemathesis.json"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("the server never became ready")
        cmd = [
            binary,
            "run",
            f"{base}/openapi.json",
            "--phases=examples,coverage,fuzzing,stateful",
            "--mode=all",
            f"--max-examples={EXAMPLES}",
            "--checks=all",
            "--exclude-checks=positive_data_acceptance",
            f"--header=Authorization: Bearer {TOKEN}",
            "--seed=19",
            "--workers=1",
            "--no-color",
            "--generation-database=none",
            "--report=json",
            f"--report-json-path={report}",
        ]
        hooks_env = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
            "ADAPTUNE_TEST_WEBHOOK_SECRET": SECRET,
            "PYTHONPATH": str(ROOT / "tests"),
        }
        done = subprocess.run(
            cmd, env=hooks_env, cwd=tmp_path, capture_output=True, text=True, timeout=800
        )
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
    finally:
        server.send_signal(signal.SIGTERM)
        _, log = server.communicate(timeout=30)
    assert report.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(report.read_text())
    summary = done.stdout[-6000:]
    assert result["failures"] == [], summary
    assert result["errors"] == [], summary
    assert result["operations"]["tested"] == result["operations"]["total"] >= 15, summary
    assert result["test_cases"]["generated"] >= 20 * result["operations"]["total"], summary
    assert result["phases"]["stateful"]["status"] == "success", result["phases"]
    for phase in ("coverage", "fuzzing"):
        assert result["phases"][phase]["status"] == "success", result["phases"]
    assert "Traceback" not in log, log[-3000:]
    # The hooks' signatures held: fuzzed payloads got past the signature to the parsers.
    counter = r'adaptune_webhooks_total\{source="(\w+)",status="(202|422)"\} (\d+)'
    parsed = re.findall(counter, metrics)
    assert {source for source, _, n in parsed if float(n) > 0} == {"github", "jira"}, metrics
