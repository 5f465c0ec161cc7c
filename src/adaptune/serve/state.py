"""What the running service holds: the store, per-domain indexes and classifiers, the generator.

Indexes and classifiers are built (or loaded) once per domain and kept; webhooks update the
index incrementally. A new dataset build's classifier replaces the old one on the next ticket.

Readiness counts the domains that existed when the service started (the ones warm-up builds)
and those built since: a domain that appears later (a webhook, ``adaptune ingest`` beside the
service) is built in the background or on its first ticket, and never takes the service out of
rotation meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from adaptune.generate import Generator
from adaptune.serve.auth import RateLimiter
from adaptune.serve.metrics import Metrics
from adaptune.serve.sessions import Sessions
from adaptune.serve.settings import ServeSettings
from adaptune.store import Store, schema
from adaptune.store.domains import list_domains
from adaptune.store.rows import row_to_issue

if TYPE_CHECKING:
    from adaptune.memory.embed import Embedder
    from adaptune.memory.issues import IssueIndex
    from adaptune.triage.classifier import TriageModel

log = logging.getLogger(__name__)
RELOAD_S = 30.0
"""How often a domain's newest dataset build is looked for (a new triage classifier)."""


class ServiceState:
    """Everything a request handler needs, shared by all requests of one app."""

    def __init__(
        self,
        store: Store,
        settings: ServeSettings,
        generator: Generator | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.generator = generator
        self._embedder = embedder
        self.indexes: dict[str, IssueIndex] = {}
        self._triage: dict[str, tuple[str | None, TriageModel | None, float]] = {}
        self._lock = threading.RLock()
        self._domain_locks: dict[str, threading.Lock] = {}
        self._index_checked: dict[str, float] = {}
        # Keys of issues stored while a domain's index was being built, added once it is.
        self._pending: dict[str, list[tuple[str, str, int]]] = {}
        self._building: set[str] = set()
        self.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
        self.sessions = Sessions()
        self.metrics = Metrics()
        self.started_at = time.time()
        self._startup_domains: frozenset[str] | None = None
        try:
            self._startup_domains = frozenset(self._domains())
        except Exception as exc:  # a database down at start-up: taken on the first readiness
            log.warning("could not list the domains at start-up: %s", exc)

    def _domains(self) -> list[str]:
        with self.store.begin() as conn:
            return [d.name for d in list_domains(conn)]

    @property
    def embedder(self) -> Embedder:
        """The sentence embedder, loaded on first use."""
        with self._lock:
            if self._embedder is None:
                from adaptune.memory.embed import default_embedder

                self._embedder = default_embedder()
            return self._embedder

    def _domain_lock(self, domain: str) -> threading.Lock:
        with self._lock:
            return self._domain_locks.setdefault(domain, threading.Lock())

    def index(self, domain: str) -> IssueIndex:
        """The domain's similar-issue index (loaded or built on first use)."""
        found = self.indexes.get(domain)
        if found is not None:
            self._follow_builds(domain, found)
            return found
        pending: list[tuple[str, str, int]] = []
        with self._domain_lock(domain):
            if domain not in self.indexes:
                pending = self._build_index(domain)
            found = self.indexes[domain]
        if pending:  # stored while the index read the store: it may have missed them
            self.update_index(pending, domain)
        return found

    def _build_index(self, domain: str) -> list[tuple[str, str, int]]:
        """Load or build the index (the caller holds the domain's lock); returns the keys of
        issues webhooks stored meanwhile."""
        from adaptune.memory.issues import load_or_build_index

        with self._lock:
            self._pending.setdefault(domain, [])
        try:
            built = load_or_build_index(self.store, domain, self.embedder)
        except BaseException:
            with self._lock:
                self._pending.pop(domain, None)
            raise
        with self._lock:
            self.indexes[domain] = built
            return self._pending.pop(domain, [])

    def _follow_builds(self, domain: str, index: IssueIndex) -> None:
        """Every ``RELOAD_S``: when a newer dataset build exists (the worker or ``adaptune build``
        made it), take in its fixes and the issues stored meanwhile, so ``similar[].solution``
        is current without a restart."""
        now = time.monotonic()
        if now - self._index_checked.setdefault(domain, now) < RELOAD_S:
            return
        self._index_checked[domain] = now
        if self._latest_build(domain) == getattr(index, "build", None):
            return
        with self._domain_lock(domain):
            index.refresh(self.store)

    def triage(self, domain: str) -> TriageModel | None:
        """The domain's triage classifier, or ``None`` when it has too few labels to learn."""
        now = time.monotonic()
        cached = self._triage.get(domain)
        if cached is not None and now - cached[2] < RELOAD_S:
            return cached[1]
        build = self._latest_build(domain)
        if cached is not None and cached[0] == build:
            self._triage[domain] = (build, cached[1], now)
            return cached[1]
        with self._domain_lock(domain):
            from adaptune.triage import ensure_triage

            model = ensure_triage(self.store, domain, self.embedder)
            self._triage[domain] = (build, model, now)
            return model

    def _latest_build(self, domain: str) -> str | None:
        from adaptune.dataset.artifacts import DatasetError, latest_build

        try:
            return latest_build(self.store.settings.home, domain).name
        except DatasetError:
            return None

    def update_index(self, keys: list[tuple[str, str, int]], domain: str) -> None:
        """Add or replace stored issues in the domain's index (after a webhook)."""
        if not keys:
            return
        with self._lock:
            if domain not in self.indexes:
                if domain in self._pending:  # being built: added once it is
                    self._pending[domain].extend(keys)
                return  # an index built later reads them from the store
        from sqlalchemy import select, tuple_

        t = schema.issues
        cols = [c for c in t.c if c.name != "raw"]
        with self.store.begin() as conn:
            rows = conn.execute(
                select(*cols).where(tuple_(t.c.source, t.c.repo, t.c.number).in_(keys))
            ).all()
        issues = [row_to_issue(r) for r in rows]
        issues = [i for i in issues if not i.is_pull_request]
        if issues:
            self.indexes[domain].update(issues)

    def warm(self) -> None:
        """Build every domain's index and classifier and load the model, logging each."""
        for name in self._domains():
            self._build(name)
        load = getattr(self.generator, "load", None)
        if callable(load):
            load()

    def _build(self, name: str) -> None:
        started = time.perf_counter()
        index = self.index(name)
        model = self.triage(name)
        log.info(
            "domain %s ready in %.1f s: %d issues indexed, triage %s",
            name,
            time.perf_counter() - started,
            len(index),
            "on" if model is not None else "off (too few labels)",
        )

    def build_in_background(self, domain: str) -> threading.Thread | None:
        """Build ``domain``'s index and triage classifier in a daemon thread (a domain a webhook
        created); a failure is logged, and the domain is then built on its first ticket.

        Returns the thread, or ``None`` when the domain is built or being built already.
        """
        with self._lock:
            if domain in self._building or self._domain_ready(domain):
                return None
            self._building.add(domain)

        def run() -> None:
            try:
                self._build(domain)
            except Exception:  # the thread has no caller to raise to; the log says why
                log.exception("building domain %s in the background failed", domain)
            finally:
                with self._lock:
                    self._building.discard(domain)

        thread = threading.Thread(target=run, name=f"build-{domain}"[:40], daemon=True)
        thread.start()
        return thread

    def _domain_ready(self, domain: str) -> bool:
        """Index built and triage classifier trained or loaded (``None``: too few labels)."""
        return domain in self.indexes and domain in self._triage

    def readiness(self) -> dict[str, Any]:
        """What ``/readyz`` reports: the database, each domain's index, the model."""
        from sqlalchemy import text

        try:
            with self.store.begin() as conn:
                conn.execute(text("SELECT 1"))
                domains = [d.name for d in list_domains(conn)]
            database = True
        except Exception as exc:  # the point of readiness is to report, not to raise
            log.warning("readiness: database unavailable: %s", exc)
            return {"ready": False, "database": False, "indexes": {}, "model": False}
        with self._lock:
            if self._startup_domains is None:
                self._startup_domains = frozenset(domains)
            startup = self._startup_domains
        # The domains of start-up must be ready; a later one counts once it is built, so data
        # that arrives while the service runs never takes it out of rotation.
        indexes = {d: self._domain_ready(d) for d in domains if d in startup}
        indexes |= {d: True for d in domains if d not in startup and self._domain_ready(d)}
        building = [d for d in domains if d not in indexes]
        model = self.generator is None or bool(self.generator.ready())
        ready = database and all(indexes.values()) and model
        return {
            "ready": ready,
            "database": database,
            "indexes": indexes,
            "building": building,
            "model": model,
        }
