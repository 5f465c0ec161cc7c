"""The worker: handlers' outcomes, retries, lease renewal and loss, a kill -9, the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from adaptune.cli import app
from adaptune.cli.worker import train_handler
from adaptune.errors import AdaptuneError, ConfigError
from adaptune.jobs import Worker, WorkerConfig, claim, enqueue, get_job
from adaptune.notify import outbox
from adaptune.store import schema
from local_server import LocalServer, Reply

SRC = Path(__file__).resolve().parents[1] / "src"
QUIET = WorkerConfig(train_threshold=0)


def worker(store, handlers, **kwargs) -> Worker:
    return Worker(store, handlers, config=kwargs.pop("config", QUIET), **kwargs)


def test_a_handler_result_is_stored_with_its_progress(store):
    seen: list[str] = []

    def echo(st, job, progress):
        progress("halfway")
        return {"echo": job.payload["x"], "domain": job.domain}

    job = enqueue(store, "echo", "d", {"x": 7})
    done = worker(
        store, {"echo": echo}, progress=lambda j, m: seen.append(f"{j.id}:{m}")
    ).run_once()
    assert (done.id, done.state, done.result) == (job.id, "succeeded", {"echo": 7, "domain": "d"})
    assert seen == [f"{job.id}:halfway"]
    assert worker(store, {"echo": echo}).run_once() is None


def test_an_adaptune_error_fails_the_job_without_retry(store):
    def bad(st, job, progress):
        raise AdaptuneError("Window 2024Q9 has no examples; ingest more issues first.")

    job = enqueue(store, "bad", "d", max_attempts=3)
    done = worker(store, {"bad": bad}).run_once()
    assert (done.state, done.attempts) == ("failed", 1)
    assert done.error == "Window 2024Q9 has no examples; ingest more issues first."
    assert get_job(store, job.id).state == "failed"


def test_a_crash_is_retried_until_it_works_or_attempts_run_out(store):
    calls: list[int] = []

    def flaky(st, job, progress):
        calls.append(job.attempts)
        if job.attempts < 3:
            raise RuntimeError("CUDA out of memory")
        return {"ok": True}

    enqueue(store, "flaky", "d", max_attempts=3)
    w = worker(store, {"flaky": flaky})
    first = w.run_once()
    assert (first.state, first.error) == ("queued", "RuntimeError: CUDA out of memory")
    assert w.run_once().state == "queued"
    last = w.run_once()
    assert (last.state, last.attempts, last.result, calls) == (
        "succeeded",
        3,
        {"ok": True},
        [1, 2, 3],
    )

    enqueue(store, "flaky", "e", max_attempts=2)
    w.run_once()
    dead = w.run_once()
    assert (dead.state, dead.attempts, dead.error) == (
        "failed",
        2,
        "RuntimeError: CUDA out of memory",
    )


def test_an_unknown_kind_fails_with_a_clear_error(store):
    enqueue(store, "mystery", None)
    done = worker(store, {"echo": lambda *a: {}}).run_once()
    assert done.state == "failed" and done.attempts == 1
    assert "No handler for job kind 'mystery'" in done.error and "echo" in done.error


def test_the_lease_is_renewed_while_a_handler_runs(store):
    stolen: list[object] = []

    def slow(st, job, progress):
        time.sleep(1.2)  # longer than the lease: only the renewals keep it
        stolen.append(claim(st, "thief", 60))
        return {"ok": True}

    enqueue(store, "slow", "d")
    done = worker(store, {"slow": slow}, lease_s=0.6).run_once()
    assert stolen == [None]
    assert (done.state, done.attempts) == ("succeeded", 1)


def test_a_lost_lease_abandons_the_result(store):
    def stalls(st, job, progress):
        # As if this worker had stalled past its lease: the clock runs out, another takes it.
        with st.begin() as conn:
            conn.execute(
                update(schema.jobs)
                .where(schema.jobs.c.id == job.id)
                .values(lease_expires_at=job.started_at)
            )
        assert claim(st, "other", 60).id == job.id
        return {"stale": True}

    job = enqueue(store, "stalls", "d")
    done = worker(store, {"stalls": stalls}).run_once()
    assert (done.state, done.lease_owner, done.result, done.attempts) == (
        "running",
        "other",
        None,
        2,
    )
    assert get_job(store, job.id).result is None


def test_notifications_for_a_promoted_train_job_are_sent(store):
    def train(st, job, progress):
        nll = {"candidate": {"w1": 2.0, "w2": 2.18}, "production": {"w1": 2.0, "w2": 2.31}}
        gate = {"passed": True, "reason": "better", "against": "production", "newest": "w2", **nll}
        return {"version": "d-v2", "parent": "d-v1", "window": "w2", "promoted": True, "gate": gate}

    with LocalServer(lambda req: Reply(200, "ok")) as server:
        config = WorkerConfig(train_threshold=0, notify_urls=(server.url + "/hook",))
        job = enqueue(store, "train", "d")
        assert worker(store, {"train": train}, config=config).tick().state == "succeeded"
        events = [r.headers["x-adaptune-event"] for r in server.requests]
        bodies = {r.headers["x-adaptune-event"]: r.json() for r in server.requests}
    assert sorted(events) == ["adapter.promoted", "job.succeeded"]
    assert bodies["adapter.promoted"]["text"] == (
        "adaptune: adapter d-v2 promoted to production in domain d (w2 NLL 2.31 → 2.18)"
    )
    assert bodies["job.succeeded"]["data"]["id"] == job.id
    assert [row["state"] for row in outbox(store)] == ["sent", "sent"]


def test_a_failed_job_notifies_and_a_candidate_is_announced(store):
    def train(st, job, progress):
        if job.domain == "bad":
            raise AdaptuneError("no data")
        return {
            "version": "ok-v3",
            "promoted": False,
            "gate": {"passed": False, "reason": "w1 regressed"},
        }

    config = WorkerConfig(train_threshold=0, notify_urls=("http://127.0.0.1:9/x",))
    w = worker(store, {"train": train}, config=config)
    enqueue(store, "train", "bad")
    enqueue(store, "train", "ok")
    w.run_once(), w.run_once()
    rows = {row["event"]: row["body"] for row in outbox(store)}
    assert set(rows) == {"job.failed", "job.succeeded", "adapter.candidate"}
    assert "failed in domain bad after 1 attempt: no data" in rows["job.failed"]
    assert "adapter ok-v3 stays a candidate in domain ok: w1 regressed" in rows["adapter.candidate"]


def test_worker_config_from_the_environment():
    env = {
        "ADAPTUNE_WORKER_POLL_S": "0.5",
        "ADAPTUNE_JOB_LEASE_S": "30",
        "ADAPTUNE_TRAIN_THRESHOLD": "10",
        "ADAPTUNE_NOTIFY_URLS": "http://a/x, http://b/y,",
        "ADAPTUNE_NOTIFY_SECRET": "s3cret",
        "ADAPTUNE_NOTIFY_FORMAT": "JSON",
    }
    config = WorkerConfig.from_env(env)
    assert (config.poll_s, config.lease_s, config.train_threshold) == (0.5, 30.0, 10)
    assert config.notify_urls == ("http://a/x", "http://b/y") and config.notify_format == "json"
    assert "s3cret" not in repr(config)
    assert WorkerConfig.from_env({}) == WorkerConfig()
    with pytest.raises(ConfigError, match="ADAPTUNE_JOB_LEASE_S"):
        WorkerConfig.from_env({"ADAPTUNE_JOB_LEASE_S": "soon"})
    with pytest.raises(ConfigError, match="slack"):
        WorkerConfig.from_env({"ADAPTUNE_NOTIFY_FORMAT": "xml"})


def test_run_forever_stops_when_told(store):
    stop = threading.Event()
    done: list[str] = []

    def last(st, job, progress):
        stop.set()
        done.append(job.id)
        return {}

    enqueue(store, "last", None)
    enqueue(store, "last", None)
    worker(store, {"last": last}, poll_s=0.05).run_forever(stop)
    assert len(done) == 1  # the job in progress finished, the next one waits


CRASHING_WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from adaptune.jobs import Worker, WorkerConfig
    from adaptune.store import open_store

    def slow(store, job, progress):
        Path(sys.argv[1]).write_text(job.id)
        time.sleep(120)
        return {"by": "first"}

    config = WorkerConfig(train_threshold=0)
    Worker(open_store(), {"slow": slow}, lease_s=1.0, config=config).run_once()
    """
)


def test_a_job_of_a_killed_worker_is_reclaimed_and_finished_once(store, tmp_path):
    job = enqueue(store, "slow", "d")
    marker = tmp_path / "started"
    script = tmp_path / "crash.py"
    script.write_text(CRASHING_WORKER)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, str(script), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.read_text() == job.id
        proc.kill()  # SIGKILL: no cleanup, the lease is simply no longer renewed
    finally:
        proc.kill()
        proc.wait()
    runs: list[int] = []

    def slow(st, j, progress):
        runs.append(j.attempts)
        return {"by": "second"}

    second = worker(store, {"slow": slow}, lease_s=1.0)
    deadline = time.monotonic() + 30
    while (done := second.run_once()) is None and time.monotonic() < deadline:
        time.sleep(0.1)  # the dead worker's lease has not expired yet
    assert done is not None and runs == [2]
    assert (done.state, done.attempts, done.result) == ("succeeded", 2, {"by": "second"})
    assert second.run_once() is None


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_cli_once_with_an_empty_queue(store):
    result = invoke("worker", "--once")
    assert result.exit_code == 0, result.output
    assert "no job queued" in result.stdout


def test_cli_once_fails_a_job_of_an_unknown_kind(store):
    job = enqueue(store, "mystery", None)
    result = invoke("worker", "--once", "--poll", "0.1")
    assert result.exit_code == 0, result.output
    assert f"job {job.id[:8]} mystery (no domain): failed" in result.stdout
    assert "No handler for job kind 'mystery' (this worker runs: train)" in result.stdout
    assert get_job(store, job.id).state == "failed"


def test_cli_refuses_an_unknown_domain(store):
    result = invoke("worker", "--once", "--domain", "nope")
    assert result.exit_code != 0
    assert "No domain 'nope'" in str(result.exception)


def test_a_default_train_job_of_an_unknown_domain_fails_without_retry(store):
    enqueue(store, "train", "nope", max_attempts=3)
    done = worker(store, {"train": train_handler}).run_once()
    assert (done.kind, done.state, done.attempts) == ("train", "failed", 1)
    assert done.error


def test_the_worker_process_stops_cleanly_on_sigterm(store, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SRC), "ADAPTUNE_TRAIN_THRESHOLD": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "adaptune", "worker", "--poll", "0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        job = enqueue(store, "mystery", None)
        deadline = time.monotonic() + 60
        while get_job(store, job.id).state != "failed" and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"job {job.id[:8]} mystery (no domain): failed" in out
    assert "stopping after the current job" in err and "Traceback" not in err
