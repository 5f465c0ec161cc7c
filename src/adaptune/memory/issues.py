"""The similar-issue index of a domain: its stored issues (not PRs), searchable by meaning.

Each issue is embedded once from its title and the head of its body (the text a build's
question starts with); a ticket is embedded once and scored against every issue by a matrix
product: exact search, a few milliseconds at 10k issues on a CPU. Everything that touches the
vectors sits behind :class:`IssueIndex`, so an ANN library could replace the product later.

The index follows the store incrementally (:meth:`IssueIndex.refresh`, by the ``ingested_at``
time of the rows), takes single issues from webhooks (:meth:`IssueIndex.update`) and is saved
to ``ADAPTUNE_HOME/indexes/<domain>/index.npz`` (no pickles). A lock lets searches run while
another thread updates.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import select, tuple_

from adaptune.dataset.artifacts import DatasetError, iter_examples, latest_build
from adaptune.dataset.scrub import scrub
from adaptune.dataset.tasks import issue_ref, question_text
from adaptune.memory.embed import Embedder
from adaptune.store import Store, schema
from adaptune.store.domains import resolve_domain
from adaptune.store.rows import row_to_issue
from adaptune.types import Issue

log = logging.getLogger(__name__)
HEAD_CHARS = 600
"""Characters of an issue's question text that are embedded (the same head as triage's)."""
DUPLICATE_THRESHOLD = 0.85
"""Cosine similarity from which the best hit is called a duplicate. On huggingface/datasets,
issues labelled ``duplicate`` reach it about three times as often as other issues do against
their nearest earlier issue (see ``bench/triage.py``): a high bar, because a wrong "duplicate
of" misleads more than a missing one."""
FORMAT = 1

Key = tuple[str, str, int]


def issue_text(issue: Issue) -> str:
    """What the index embeds for an issue: the head of its question text."""
    return question_text(issue, max_chars=2000)[0][:HEAD_CHARS]


def index_path(home: Path, domain: str) -> Path:
    """Where a domain's index is saved."""
    return home / "indexes" / domain / "index.npz"


def latest_solutions(home: Path, domain: str, known: str | None = None) -> tuple[str | None, dict]:
    """``(build id, {issue ref: fix})`` from the latest build's qa examples; the fixes are not
    read again (empty dict) when the latest build is still ``known``."""
    try:
        build = latest_build(home, domain)
        if build.name == known:
            return known, {}
        return build.name, {e.issue: e.answer for e in iter_examples(build, "qa")}
    except DatasetError:
        return None, {}


class IssueIndex:
    """A domain's stored issues, searchable by the similarity of their texts."""

    def __init__(self, domain: str, embedder: Embedder, home: Path) -> None:
        self.domain = domain
        self.embedder = embedder
        self.home = home
        self.cursor: datetime | None = None
        """``ingested_at`` of the newest row seen by :meth:`refresh`."""
        self.build: str | None = None
        self._solutions: dict[str, str] = {}
        self._keys: list[Key] = []
        self._pos: dict[Key, int] = {}
        self._payloads: list[dict] = []
        self._updated: list[float] = []
        self._vectors = np.zeros((16, embedder.dim), dtype=np.float32)
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._keys)

    def search(self, text: str, k: int = 5, exclude: Collection[Key] = ()) -> list[dict]:
        """The ``k`` issues most similar to ``text``, best first (``exclude``: their keys)."""
        query = self.embedder.encode([text[:HEAD_CHARS]])[0]
        with self._lock:
            n = len(self._keys)
            if not n or k < 1:
                return []
            scores = self._vectors[:n] @ query
            for key in exclude:
                if (j := self._pos.get(tuple(key))) is not None:
                    scores[j] = -np.inf
            top = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
            top = top[np.argsort(-scores[top], kind="stable")]
            return [
                {**self._payloads[j], "score": float(scores[j])}
                for j in top
                if np.isfinite(scores[j])
            ]

    def duplicate_of(self, hits: list[dict], threshold: float = DUPLICATE_THRESHOLD) -> int | None:
        """The number of the best hit when its score reaches ``threshold``, else ``None``."""
        best = max(hits, key=lambda h: h["score"], default=None)
        return best["number"] if best is not None and best["score"] >= threshold else None

    def update(self, issues: Sequence[Issue]) -> None:
        """Add or replace ``issues`` now (pull requests are ignored)."""
        issues = [i for i in issues if not i.is_pull_request]
        if not issues:
            return
        vecs = self.embedder.encode([issue_text(i) for i in issues])
        with self._lock:
            for issue, vec in zip(issues, vecs, strict=True):
                key = (issue.source, issue.repo, issue.number)
                j = self._pos.get(key)
                if j is None:
                    j = self._append(key)
                self._vectors[j] = vec
                self._payloads[j] = self._payload(issue)
                self._updated[j] = issue.updated_at.timestamp()

    def refresh(self, store: Store) -> int:
        """Take in the domain's issues stored or changed since the last refresh (and the latest
        build's fixes); returns how many issues were added or replaced."""
        self._refresh_solutions()
        t = schema.issues
        with store.begin() as conn:
            dom = resolve_domain(conn, self.domain)
            pairs = [tuple(s.split(":", 1)) for s in dom.sources]
            if not pairs:
                return 0
            cols = [c for c in t.c if c.name != "raw"]
            stmt = select(*cols).where(
                tuple_(t.c.source, t.c.repo).in_(pairs), t.c.is_pull_request.is_(False)
            )
            if self.cursor is not None:  # ≥: rows stamped in the same instant are not missed
                stmt = stmt.where(t.c.ingested_at >= self.cursor)
            rows = list(conn.execute(stmt.order_by(t.c.ingested_at, t.c.id)))
        changed = [row_to_issue(r) for r in rows if self._is_news(r)]
        self.update(changed)
        if rows:
            self.cursor = max(r.ingested_at for r in rows)
        return len(changed)

    def save(self) -> None:
        """Write the index to ``ADAPTUNE_HOME/indexes/<domain>/index.npz`` atomically."""
        with self._lock:
            n = len(self._keys)
            vectors = self._vectors[:n].copy()
            meta = {
                "format": FORMAT,
                "domain": self.domain,
                "dim": self.embedder.dim,
                "cursor": self.cursor.isoformat() if self.cursor else None,
                "build": self.build,
                "keys": [list(k) for k in self._keys],
                "updated": list(self._updated),
                "payloads": [
                    {k: v for k, v in p.items() if k != "solution"} for p in self._payloads
                ],
            }
        path = index_path(self.home, self.domain)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".index-", suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, vectors=vectors, meta=np.array(json.dumps(meta)))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, home: Path, domain: str, embedder: Embedder) -> IssueIndex:
        """The saved index of ``domain`` (``FileNotFoundError`` when there is none)."""
        with np.load(index_path(home, domain), allow_pickle=False) as z:
            vectors, meta = z["vectors"], json.loads(str(z["meta"]))
        if meta.get("format") != FORMAT or meta.get("dim") != embedder.dim:
            raise ValueError("saved with another format or embedding model")
        index = cls(domain, embedder, home)
        index._keys = [tuple(k) for k in meta["keys"]]
        index._pos = {k: i for i, k in enumerate(index._keys)}
        index._payloads = meta["payloads"]
        index._updated = meta["updated"]
        index._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(index._vectors) == 0:
            index._vectors = np.zeros((16, embedder.dim), dtype=np.float32)
        index.cursor = datetime.fromisoformat(meta["cursor"]) if meta["cursor"] else None
        index._refresh_solutions(force=True)
        return index

    def _append(self, key: Key) -> int:
        n = len(self._keys)
        if n == len(self._vectors):  # grow by doubling: appends stay cheap
            grown = np.zeros((max(16, 2 * n), self._vectors.shape[1]), dtype=np.float32)
            grown[:n] = self._vectors[:n]
            self._vectors = grown
        self._keys.append(key)
        self._pos[key] = n
        self._payloads.append({})
        self._updated.append(0.0)
        return n

    def _is_news(self, row) -> bool:
        j = self._pos.get((row.source, row.repo, row.number))
        return j is None or row.updated_at.timestamp() > self._updated[j]

    def _payload(self, issue: Issue) -> dict:
        return {
            "number": issue.number,
            # Scrubbed like every dataset text: a ticket's answer never echoes another issue's
            # secret or e-mail address in clear.
            "title": scrub(issue.title),
            "url": issue.url,
            "state": issue.state,
            "solution": self._solutions.get(issue_ref(issue)),
            "source": issue.source,
            "repo": issue.repo,
        }

    def _refresh_solutions(self, force: bool = False) -> None:
        """Reload the fixes when a newer build exists and put them in every payload."""
        build, solutions = latest_solutions(self.home, self.domain, None if force else self.build)
        if build == self.build and not force:
            return
        with self._lock:
            self.build, self._solutions = build, solutions
            for p in self._payloads:
                p["solution"] = solutions.get(f"{p['source']}:{p['repo']}#{p['number']}")


def load_or_build_index(store: Store, domain: str, embedder: Embedder) -> IssueIndex:
    """The domain's saved index brought up to date with the store, or a new one built from it
    (saved either way when anything changed)."""
    home = store.settings.home
    try:
        index = IssueIndex.load(home, domain, embedder)
    except FileNotFoundError:
        index = None
    except (OSError, ValueError, KeyError) as exc:
        log.warning("the similar-issue index of %s is unusable (%s): rebuilding it", domain, exc)
        index = None
    if index is None:
        index = IssueIndex(domain, embedder, home)
        n = index.refresh(store)
        log.info("built the similar-issue index of %s from %d stored issues", domain, n)
        index.save()
    elif index.refresh(store):
        index.save()
    return index
