"""Prometheus metrics of one app: requests, latencies, generation, queue, production adapters.

Each app has its own registry (several apps in one test process do not collide). Queue depth,
training runs and the production adapter of each domain are read from the database at scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from adaptune.store import Store, schema

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StoreCollector:
    """Gauges read from the store at each scrape."""

    def __init__(self) -> None:
        self.store: Store | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.store is None:
            return
        from sqlalchemy import func, select

        jobs, aliases = schema.jobs, schema.adapter_aliases
        try:
            with self.store.begin() as conn:
                by_state = conn.execute(
                    select(jobs.c.kind, jobs.c.state, func.count()).group_by(
                        jobs.c.kind, jobs.c.state
                    )
                ).all()
                prod = conn.execute(
                    select(aliases.c.domain, aliases.c.version).where(
                        aliases.c.alias == "production"
                    )
                ).all()
        except Exception as exc:  # a scrape must not fail because the database hiccups
            log.warning("metrics: cannot read the store: %s", exc)
            return
        depth = GaugeMetricFamily(
            "adaptune_queue_depth", "Jobs waiting or running.", labels=["state"]
        )
        counts = {"queued": 0, "running": 0}
        runs = GaugeMetricFamily(
            "adaptune_jobs", "Jobs in the database by kind and state.", labels=["kind", "state"]
        )
        for kind, state, n in by_state:
            runs.add_metric([kind, state], n)
            if state in counts:
                counts[state] += n
        for state, n in counts.items():
            depth.add_metric([state], n)
        production = GaugeMetricFamily(
            "adaptune_production_adapter",
            "1 for the adapter version in production, per domain.",
            labels=["domain", "version"],
        )
        for domain, version in prod:
            production.add_metric([domain, version], 1)
        yield depth
        yield runs
        yield production


class Metrics:
    """The app's counters and histograms, and the store-backed gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "adaptune_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "adaptune_http_request_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.tickets = Counter(
            "adaptune_tickets",
            "Tickets answered by domain and arm.",
            ["domain", "arm"],
            registry=self.registry,
        )
        self.generated_tokens = Counter(
            "adaptune_generated_tokens", "Tokens generated.", registry=self.registry
        )
        self.generation_seconds = Counter(
            "adaptune_generation_seconds", "Seconds spent generating.", registry=self.registry
        )
        self.webhooks = Counter(
            "adaptune_webhooks",
            "Webhook deliveries by source and outcome.",
            ["source", "status"],
            registry=self.registry,
        )
        self._store = _StoreCollector()
        self.registry.register(self._store)

    def bind(self, store: Store) -> None:
        """Read the store-backed gauges from ``store``."""
        self._store.store = store

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
