"""Webhook storm: signed GitHub ``issues`` deliveries into a real ``adaptune serve`` process.

``--deliveries`` signed deliveries (default 2,000) from ``--clients`` concurrent clients
(default 32): each issue is ``opened``, ``edited`` and ``closed`` (three deliveries with rising
``updated_at``), the order is shuffled so that many ``edited``/``closed`` arrive before their
``opened``, and ``--redeliver`` of them (default 10 %) are sent a second time with the same
``X-GitHub-Delivery``. Afterwards the store is read directly: every delivery must have been
answered 2xx, every issue stored exactly once with its newest state (``closed``, the final
title), every unique delivery recorded once: 0 lost, 0 duplicated. Prints deliveries/s and
p50/p95 latency beside the named baseline (``GET /healthz`` on the same server, same clients),
on SQLite and, when PostgreSQL's server binaries are installed, on a throw-away PostgreSQL
cluster. Writes ``bench/results/webhook_load.json``.

    python bench/webhook_load.py [--deliveries 2000] [--clients 32] [--no-postgres]

The helpers (plan, server, storm, check) are reused by ``tests/test_reliability_*.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SECRET = "load-webhook-secret"
REPO = "load-org/widgets"
ACTIONS = ("opened", "edited", "closed")


@dataclass(frozen=True)
class Send:
    """One HTTP delivery: its id, body and signature, and the issue it is about."""

    delivery: str
    raw: bytes
    signature: str
    number: int


@dataclass
class Outcome:
    """What the storm saw: status per sent delivery (``None``: no answer) and latencies."""

    statuses: list[int | None] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    seconds: float = 0.0


def _issue(number: int, step: int) -> dict:
    t0 = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=number)
    closed = step == 2
    return {
        "number": number,
        "title": f"Issue {number} rev {step}",
        "body": f"Body of issue {number}, revision {step}.",
        "state": "closed" if closed else "open",
        "created_at": t0.isoformat(),
        "updated_at": (t0 + timedelta(minutes=step)).isoformat(),
        "closed_at": (t0 + timedelta(minutes=step)).isoformat() if closed else None,
        "html_url": f"https://github.com/{REPO}/issues/{number}",
        "labels": [{"name": "bug"}],
        "user": {"login": "load"},
    }


def sign(raw: bytes, secret: str = SECRET) -> str:
    """The ``X-Hub-Signature-256`` value of ``raw``."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def plan(deliveries: int, redeliver: float = 0.1, seed: int = 0) -> tuple[list[Send], int]:
    """The shuffled deliveries (re-deliveries included) and how many issues they are about."""
    rng = random.Random(seed)
    unique = deliveries - round(deliveries * redeliver)
    issues = max(1, unique // len(ACTIONS))
    sends = []
    for i in range(issues * len(ACTIONS)):
        number, step = i // len(ACTIONS) + 1, i % len(ACTIONS)
        payload = {
            "action": ACTIONS[step],
            "issue": _issue(number, step),
            "repository": {"full_name": REPO},
        }
        raw = json.dumps(payload).encode()
        sends.append(Send(f"d-{number}-{step}", raw, sign(raw), number))
    rng.shuffle(sends)
    extra = [rng.choice(sends) for _ in range(deliveries - len(sends))]
    for again in extra:  # re-deliveries land after (and sometimes long after) the first copy
        sends.insert(rng.randrange(len(sends) // 2, len(sends) + 1), again)
    return sends, issues


def headers(send: Send) -> dict[str, str]:
    """The GitHub headers of one delivery."""
    return {
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": send.delivery,
        "X-GitHub-Hook-ID": "4242",
        "X-Hub-Signature-256": send.signature,
        "Content-Type": "application/json",
    }


def free_port() -> int:
    """A free local TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int, database_url: str | None = None) -> subprocess.Popen:
    """``adaptune serve`` on ``port`` (no generator, webhook secret set), once it answers."""
    env = {
        **os.environ,
        "ADAPTUNE_HOME": str(home),
        "ADAPTUNE_GENERATOR": "none",
        "ADAPTUNE_GITHUB_WEBHOOK_SECRET": SECRET,
        "ADAPTUNE_WEBHOOK_NEW_DOMAINS": "true",  # the storm's repo makes its own domain
        "ADAPTUNE_WARM": "false",  # and its index is not built meanwhile, as before
        "ADAPTUNE_API_TOKEN": "load-admin-token",
        "PYTHONPATH": str(ROOT / "src"),
    }
    env.pop("ADAPTUNE_DATABASE_URL", None)
    if database_url:
        env["ADAPTUNE_DATABASE_URL"] = database_url
    cmd = [sys.executable, "-m", "adaptune", "serve", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # never block on a full pipe
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"adaptune serve exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("adaptune serve did not answer /healthz within 120 s")


@contextmanager
def server(home: Path, database_url: str | None = None) -> Iterator[str]:
    """A running server's base URL; stopped (SIGTERM) afterwards."""
    port = free_port()
    proc = start_server(home, port, database_url)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop the server with ``sig`` and wait for it."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def storm(base: str, sends: list[Send], clients: int, out: Outcome | None = None) -> Outcome:
    """Post every delivery from ``clients`` threads; a connection error is recorded as ``None``.

    Pass ``out`` to watch the acknowledgements (``out.acked``) while the storm runs.
    """
    out = out or Outcome()
    out.statuses, out.latencies = [None] * len(sends), [0.0] * len(sends)
    local = threading.local()

    def post(i: int) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=60)
        send = sends[i]
        started = time.perf_counter()
        try:
            url = f"{base}/webhooks/github"
            r = local.client.post(url, content=send.raw, headers=headers(send))
        except httpx.HTTPError:
            return  # no answer: not acknowledged, the sender must deliver it again
        out.latencies[i] = time.perf_counter() - started
        out.statuses[i] = r.status_code
        if r.is_success:
            out.acked.add(send.delivery)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, range(len(sends))))
    out.seconds = time.perf_counter() - started
    return out


def baseline(base: str, requests: int, clients: int) -> dict:
    """``GET /healthz`` from the same number of clients: the HTTP floor of this server."""
    lat: list[float] = []
    local = threading.local()

    def get(_: int) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=60)
        started = time.perf_counter()
        local.client.get(f"{base}/healthz")
        lat.append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(get, range(requests)))
    return summary(lat, time.perf_counter() - started)


def summary(latencies: list[float], seconds: float) -> dict:
    """Requests/s, p50 and p95 in milliseconds."""
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return {
        "requests": len(ordered),
        "per_s": round(len(ordered) / seconds, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(p95 * 1000, 1),
    }


def check(home: Path, issues: int, sends: list[Send], database_url: str | None = None) -> dict:
    """Read the store: issues stored once with the newest state, deliveries recorded once."""
    from sqlalchemy import select

    from adaptune.config import load_settings
    from adaptune.store import open_store, schema

    store = open_store(load_settings(home=home, database_url=database_url))
    t, d = schema.issues, schema.webhook_deliveries
    try:
        with store.begin() as conn:
            rows = conn.execute(select(t.c.number, t.c.title, t.c.state).where(t.c.repo == REPO))
            stored = rows.all()
            keys = conn.execute(select(d.c.delivery_key)).scalars().all()
    finally:
        store.close()
    numbers = [r.number for r in stored]
    final = {r.number: (r.title, r.state) for r in stored}
    expected = {n: (f"Issue {n} rev {len(ACTIONS) - 1}", "closed") for n in range(1, issues + 1)}
    unique = {s.delivery for s in sends}
    return {
        "issues_expected": issues,
        "issues_stored": len(set(numbers)),
        "issues_duplicated": len(numbers) - len(set(numbers)),
        "issues_lost": len(set(expected) - set(numbers)),
        "issues_stale": sum(final.get(n) != v for n, v in expected.items() if n in final),
        "deliveries_recorded": len(keys),
        "deliveries_lost": len(unique - set(keys)),
        "deliveries_duplicated": len(keys) - len(set(keys)),
    }


def recorded(home: Path, database_url: str | None = None) -> set[str]:
    """The delivery ids recorded in the store."""
    from sqlalchemy import select

    from adaptune.config import load_settings
    from adaptune.store import open_store, schema

    store = open_store(load_settings(home=home, database_url=database_url))
    try:
        with store.begin() as conn:
            keys = conn.execute(select(schema.webhook_deliveries.c.delivery_key)).scalars()
            return set(keys)
    finally:
        store.close()


def crash_and_resend(
    home: Path, sends: list[Send], clients: int, kill_after: int, database_url: str | None = None
) -> dict:
    """``kill -9`` the server once ``kill_after`` deliveries are acknowledged, restart it, send
    again what was not acknowledged; returns what happened (the caller checks the store)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(home, port, database_url)
    out = Outcome()

    def killer() -> None:
        deadline = time.time() + 300
        while len(out.acked) < kill_after and time.time() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        storm(base, sends, clients, out)
    finally:
        thread.join()
        proc.wait(timeout=30)
    unacked = [s for s in sends if s.delivery not in out.acked]
    lost = len(out.acked - recorded(home, database_url))
    proc = start_server(home, port, database_url)
    try:
        again = storm(base, unacked, clients)
    finally:
        stop(proc)
    return {
        "acked_before_kill": len(out.acked),
        "resent": len(unacked),
        "acked_lost_by_crash": lost,
        "resend_non_2xx": sum(1 for s in again.statuses if s is None or not 200 <= s < 300),
    }


def run(label: str, args: argparse.Namespace, database_url: str | None = None) -> dict:
    """One storm against a fresh workspace (and database) with its baseline and check."""
    sends, issues = plan(args.deliveries, args.redeliver, args.seed)
    with tempfile.TemporaryDirectory(prefix="adaptune-load-") as tmp:
        home = Path(tmp) / "home"
        with server(home, database_url) as base:
            floor = baseline(base, min(len(sends), 1000), args.clients)
            out = storm(base, sends, args.clients)
        result = check(home, issues, sends, database_url)
        crash_db = _fresh(database_url, "webhook_crash") if database_url else None
        third = len(sends) // 3
        crash = crash_and_resend(Path(tmp) / "crash", sends, args.clients, third, crash_db)
        crash["store"] = check(Path(tmp) / "crash", issues, sends, crash_db)
    non_2xx = sum(1 for s in out.statuses if s is None or not 200 <= s < 300)
    result.update(
        database=label,
        deliveries=len(sends),
        redelivered=len(sends) - len({s.delivery for s in sends}),
        clients=args.clients,
        non_2xx=non_2xx,
        webhooks=summary(out.latencies, out.seconds),
        baseline_healthz=floor,
        kill_9=crash,
    )
    return result


def _fresh(database_url: str, name: str) -> str:
    from pg_cluster import fresh_database

    return fresh_database(database_url.rsplit("/", 1)[0] + "/postgres", name)


def main() -> None:
    """Run the storms and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deliveries", type=int, default=2000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--redeliver", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-postgres", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/webhook_load.json")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    runs = [run("sqlite", args)]
    from pg_cluster import cluster, fresh_database, unavailable_reason

    reason = "--no-postgres" if args.no_postgres else unavailable_reason()
    if reason is None:
        with cluster() as admin:
            runs.append(run("postgresql", args, fresh_database(admin, "webhook_load")))
    for r in runs:
        w, b = r["webhooks"], r["baseline_healthz"]
        print(
            f"{r['database']:>10}: {r['deliveries']} deliveries ({r['redelivered']} re-sent), "
            f"{r['clients']} clients: {w['per_s']} deliveries/s, p50 {w['p50_ms']} ms, "
            f"p95 {w['p95_ms']} ms | baseline /healthz {b['per_s']}/s p95 {b['p95_ms']} ms | "
            f"non-2xx {r['non_2xx']}, issues lost {r['issues_lost']}, duplicated "
            f"{r['issues_duplicated']}, stale {r['issues_stale']}, deliveries lost "
            f"{r['deliveries_lost']}, duplicated {r['deliveries_duplicated']}"
        )
        k, ks = r["kill_9"], r["kill_9"]["store"]
        print(
            f"{'kill -9':>10}: after {k['acked_before_kill']} acknowledged, re-sent "
            f"{k['resent']} (non-2xx {k['resend_non_2xx']}): acknowledged lost "
            f"{k['acked_lost_by_crash']}, issues lost {ks['issues_lost']}, duplicated "
            f"{ks['issues_duplicated']}, stale {ks['issues_stale']}, deliveries lost "
            f"{ks['deliveries_lost']}, duplicated {ks['deliveries_duplicated']}"
        )
    doc = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "postgres_skipped": reason,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
