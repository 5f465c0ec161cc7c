"""Service latency and generation speed: a real ``adaptune serve`` process over 10,000 issues.

1. Ticket latency: the three real dumps of ../shared/data (huggingface/datasets, vLLM,
   llama.cpp) are ingested into one domain and topped up to 10,000 stored issues with
   renumbered copies (the index's cost depends on how many vectors it holds, not on their
   text). ``POST /v1/tickets`` with ``generate: false`` is timed over real issue titles and
   bodies, sequentially and from 8 concurrent clients, beside the named baseline: ``GET
   /healthz`` on the same server (the HTTP floor). Goal: p95 < 50 ms.
2. Generation: tickets with ``generate: true`` on the default model (SmolLM2-135M), tokens/s
   through the service with each backend (transformers, and llama.cpp when installed), beside
   the baseline of plain transformers ``generate()`` on the same prompts in this process.

Writes ``bench/results/serve.json``.

    python bench/serve.py [--requests 300] [--gen-tickets 4] [--no-gen]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared/data/github"
FILES = (
    "huggingface-datasets.issues.jsonl.gz",
    "vllm.issues-sample.jsonl.gz",
    "llama.cpp.issues-sample.jsonl.gz",
)
TOKEN = "bench-token"
TARGET = 10_000


def corpus(out: Path) -> tuple[int, list[dict]]:
    """Write one JSONL of ≥ TARGET issues (real ones plus renumbered copies); return queries."""
    real = []
    for name in FILES:
        with gzip.open(DATA / name, "rt") as fh:
            real.extend(json.loads(line) for line in fh)
    issues = [r for r in real if "pull_request" not in r]
    rows = list(real)
    n, copy = len(issues), 0
    while n < TARGET:
        src = issues[copy % len(issues)]
        copy += 1
        number = 1_000_000 + copy
        rows.append(
            {
                **src,
                "number": number,
                "html_url": f"https://github.com/bench/copy/issues/{number}",
                "repository_url": "https://api.github.com/repos/bench/copy",
                "pull_request": None,
            }
        )
        rows[-1].pop("pull_request")
        n += 1
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    queries = [
        {"title": r["title"], "body": (r.get("body") or "")[:2000]} for r in issues[::7][:1000]
    ]
    return n, queries


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(env: dict, port: int, timeout: float = 1800) -> subprocess.Popen:
    """Start ``adaptune serve`` and wait for /readyz."""
    # stderr goes to a file: a pipe nobody reads would block the server once it fills
    log = Path(tempfile.mkdtemp(prefix="adaptune-serve-")) / "stderr.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adaptune",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        text=True,
    )
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"adaptune serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("adaptune serve did not become ready")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(ms: list[float]) -> dict:
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 0.5), 2),
        "p95_ms": round(pct(ms, 0.95), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def timed(client: httpx.Client, method: str, url: str, **kw) -> float:
    t0 = time.perf_counter()
    r = client.request(method, url, **kw)
    r.raise_for_status()
    return (time.perf_counter() - t0) * 1000


def latency(port: int, queries: list[dict], n: int, workers: int) -> dict:
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(timeout=60, headers=headers) as c:
        for q in queries[:20]:  # warm-up
            timed(c, "POST", f"{base}/v1/tickets", json={**q, "generate": False})
        floor = [timed(c, "GET", f"{base}/healthz") for _ in range(n)]
        seq = [
            timed(
                c,
                "POST",
                f"{base}/v1/tickets",
                json={**queries[i % len(queries)], "generate": False},
            )
            for i in range(n)
        ]

    def one(i: int) -> float:
        with httpx.Client(timeout=60, headers=headers) as c:
            return timed(
                c,
                "POST",
                f"{base}/v1/tickets",
                json={**queries[i % len(queries)], "generate": False},
            )

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        conc = list(pool.map(one, range(n)))
    wall = time.perf_counter() - t0
    return {
        "healthz_baseline": summary(floor),
        "tickets_sequential": summary(seq),
        f"tickets_{workers}_clients": {**summary(conc), "tickets_per_s": round(n / wall, 1)},
    }


def generation(port: int, queries: list[dict], n: int, max_new: int) -> dict:
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(timeout=600, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        c.post(f"{base}/v1/tickets", json={**queries[0], "max_new_tokens": 8}).raise_for_status()
        for q in queries[1 : n + 1]:
            r = c.post(f"{base}/v1/tickets", json={**q, "max_new_tokens": max_new})
            r.raise_for_status()
            if r.json()["answer"] is None:
                raise SystemExit(f"no answer: {r.json().get('answer_error')}")
        metrics = c.get(f"{base}/metrics").text
    gen_tokens = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("adaptune_generated_tokens_total")
    )
    gen_seconds = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("adaptune_generation_seconds_total")
    )
    return {
        "tickets": n,
        "tokens": gen_tokens,
        "seconds": round(gen_seconds, 2),
        "tokens_per_s": round(gen_tokens / gen_seconds, 1) if gen_seconds else None,
    }


def plain_generate(home: Path, queries: list[dict], n: int, max_new: int) -> dict:
    """Baseline: transformers generate() on the same model and prompts, no service."""
    import torch

    from adaptune.generate.prompt import prompt_ids, stop_ids
    from adaptune.train.model import load_base

    model, tok, _ = load_base(None, home)
    model.eval()
    tokens, seconds = 0, 0.0
    for q in queries[1 : n + 1]:
        ids = torch.tensor(
            [prompt_ids(tok, f"Title: {q['title']}\n\n{q['body']}", (), None, 1024 - max_new)]
        )
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=stop_ids(tok),
            )
        seconds += time.perf_counter() - t0
        tokens += out.shape[1] - ids.shape[1]
    return {
        "tickets": n,
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--gen-tickets", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--no-gen", action="store_true")
    args = ap.parse_args()
    missing = [f for f in FILES if not (DATA / f).exists()]
    if missing:
        raise SystemExit(f"needs ../shared/data/github/{missing[0]} (see its README)")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {
            **os.environ,
            "ADAPTUNE_HOME": str(home),
            "ADAPTUNE_API_TOKEN": TOKEN,
            "ADAPTUNE_GENERATOR": "none",
            "PYTHONPATH": str(ROOT / "src"),
        }
        env.pop("ADAPTUNE_DATABASE_URL", None)
        path = Path(tmp) / "issues.jsonl"
        stored, queries = corpus(path)
        t0 = time.perf_counter()
        run = [sys.executable, "-m", "adaptune"]
        subprocess.run([*run, "domains", "add", "bench"], env=env, check=True, capture_output=True)
        subprocess.run(
            [*run, "ingest", "file", str(path), "--domain", "bench"],
            env=env,
            check=True,
            capture_output=True,
        )
        ingest_s = time.perf_counter() - t0
        port = free_port()
        t0 = time.perf_counter()
        proc = start(env, port)
        ready_s = time.perf_counter() - t0
        try:
            lat = latency(port, queries, args.requests, args.workers)
        finally:
            proc.terminate()
            proc.wait(30)
        result = {
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            },
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "stored_issues": stored,
            "ingest_s": round(ingest_s, 1),
            "startup_to_ready_s": round(ready_s, 1),
            "latency": lat,
            "goal_p95_ms": 50,
            "p95_goal_met": lat["tickets_sequential"]["p95_ms"] < 50,
        }
        print(f"{stored} issues stored; server ready (index + triage built) in {ready_s:.1f} s")
        print(f"{'':28}{'p50 ms':>9}{'p95 ms':>9}")
        for name, s in lat.items():
            print(f"{name:28}{s['p50_ms']:>9.1f}{s['p95_ms']:>9.1f}")
        if not args.no_gen:
            gen = {}
            backends = ["transformers"]
            if importlib.util.find_spec("llama_cpp") is not None:
                backends.append("llamacpp")
            for backend in backends:
                env["ADAPTUNE_GENERATOR"] = backend
                port = free_port()
                proc = start(env, port)
                try:
                    gen[f"service_{backend}"] = generation(
                        port, queries, args.gen_tickets, args.max_new_tokens
                    )
                finally:
                    proc.terminate()
                    proc.wait(30)
            gen["plain_transformers_baseline"] = plain_generate(
                home, queries, args.gen_tickets, args.max_new_tokens
            )
            result["generation"] = gen
            print(
                "generation tokens/s: "
                + ", ".join(f"{k} {v['tokens_per_s']}" for k, v in gen.items())
            )
    out = ROOT / "bench/results/serve.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
