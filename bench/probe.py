"""The outside probe, repeatable: schemathesis with every phase against a real ``adaptune serve``.

Seeds a fresh workspace with the test fixture's issues (``tests/serve_fixtures.seed_store``),
starts ``adaptune serve`` as the README's default deployment does (reads closed, both webhook
secrets set, a bearer token), and runs ``schemathesis run`` with the examples, coverage, fuzzing
and stateful phases, positive and negative data and every check but ``positive_data_acceptance``
(unknown domains are a 422 by design), webhook bodies signed by ``tests/schemathesis_hooks.py``.
Afterwards it reads the server's own ``/metrics`` (every request it answered, by status), builds
the dataset of what the fuzzer left behind (how many qa examples its feedback taught: the
probe's poisoning finding), and the workspace's file modes. Writes
``bench/results/probe.json``.

    python bench/probe.py [--examples 1500] [--seed 112]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "probe-token"
SECRET = "probe-webhook-secret"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seed(home: Path) -> None:
    code = (
        "import sys; from pathlib import Path; sys.path[:0] = [sys.argv[1], sys.argv[2]];"
        "from adaptune.store import open_store; from serve_fixtures import seed_store;"
        "s = open_store(); seed_store(s, Path(sys.argv[3])); s.close()"
    )
    env = {**os.environ, "ADAPTUNE_HOME": str(home), "TQDM_DISABLE": "1"}
    args = [str(ROOT / "src"), str(ROOT / "tests"), str(home.parent)]
    subprocess.run([sys.executable, "-c", code, *args], env=env, check=True, capture_output=True)


def _statuses(metrics: str) -> dict[str, dict[str, int]]:
    """Requests the server answered, by route and status (from its Prometheus counter)."""
    counts: dict[str, Counter[str]] = {}
    for line in metrics.splitlines():
        if not line.startswith("adaptune_http_requests_total{"):
            continue
        labels, value = line.rsplit(" ", 1)
        route = re.search(r'route="([^"]*)"', labels)
        status = re.search(r'status="(\d+)"', labels)
        if route and status:
            counts.setdefault(route.group(1), Counter())[status.group(1)] += int(float(value))
    return {route: dict(sorted(c.items())) for route, c in sorted(counts.items())}


def main() -> None:
    """Run the probe and write its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1500, help="cases per operation")
    parser.add_argument("--seed", type=int, default=112)
    args = parser.parse_args()
    binary = Path(sys.executable).parent / "schemathesis"
    work = Path(tempfile.mkdtemp(prefix="adaptune-probe-"))
    home = work / "home"
    _seed(home)
    port = _free_port()
    env = {
        **os.environ,
        "ADAPTUNE_HOME": str(home),
        "ADAPTUNE_API_TOKEN": TOKEN,
        "ADAPTUNE_GENERATOR": "none",
        "ADAPTUNE_GITHUB_WEBHOOK_SECRET": SECRET,
        "ADAPTUNE_JIRA_WEBHOOK_SECRET": SECRET,
        "ADAPTUNE_MAX_BODY_BYTES": "8000000",
        "PYTHONPATH": str(ROOT / "src"),
    }
    env.pop("ADAPTUNE_OPEN_READS", None)
    log_path = work / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "adaptune", "serve", "--port", str(port)], env=env, stderr=log
        )
    base = f"http://127.0.0.1:{port}"
    report = work / "schemathesis.json"
    started = time.perf_counter()
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        cmd = [
            str(binary),
            "run",
            f"{base}/openapi.json",
            "--phases=examples,coverage,fuzzing,stateful",
            "--mode=all",
            f"--max-examples={args.examples}",
            "--checks=all",
            "--exclude-checks=positive_data_acceptance",
            f"--header=Authorization: Bearer {TOKEN}",
            f"--seed={args.seed}",
            "--workers=1",
            "--no-color",
            "--generation-database=none",
            "--report=json",
            f"--report-json-path={report}",
        ]
        hooks = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
            "ADAPTUNE_TEST_WEBHOOK_SECRET": SECRET,
            "PYTHONPATH": str(ROOT / "tests"),
        }
        done = subprocess.run(cmd, env=hooks, cwd=work, capture_output=True, text=True)
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    seconds = time.perf_counter() - started
    result = json.loads(report.read_text())
    build = subprocess.run(
        [sys.executable, "-m", "adaptune", "dataset", "build", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    shown = subprocess.run(
        [sys.executable, "-m", "adaptune", "dataset", "show", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    feedback = (
        json.loads(shown.stdout)["tasks"]["qa"].get("feedback") if build.returncode == 0 else None
    )
    modes = {
        p.name: oct(stat.S_IMODE(p.stat().st_mode))
        for p in [home, *sorted(home.glob("adaptune.db*"))]
    }
    routes = _statuses(metrics)
    statuses: Counter[str] = Counter()
    for by_status in routes.values():
        statuses.update(by_status)
    # /readyz answers 503 while start-up builds the indexes (documented): not a server error.
    errors = {
        route: {s: n for s, n in by_status.items() if s.startswith("5")}
        for route, by_status in routes.items()
        if route != "/readyz" and any(s.startswith("5") for s in by_status)
    }
    out = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": os.getloadavg(),
        "schemathesis": {
            "version": result["schemathesis_version"],
            "phases": {k: v["status"] for k, v in result["phases"].items()},
            "examples_per_operation": args.examples,
            "operations": result["operations"]["tested"],
            "test_cases": result["test_cases"]["generated"],
            "failures": result["failures"],
            "errors": result["errors"],
            "exit_code": done.returncode,
        },
        "server": {
            "requests": sum(statuses.values()),
            "by_status": dict(sorted(statuses.items())),
            "by_route": routes,
            "server_errors": errors,
            "tracebacks_in_log": log_path.read_text().count("Traceback"),
        },
        "fuzzer_feedback_in_next_build": feedback,
        "file_modes": modes,
        "seconds": round(seconds, 1),
    }
    print(json.dumps(out, indent=1))
    path = ROOT / "bench" / "results" / "probe.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
