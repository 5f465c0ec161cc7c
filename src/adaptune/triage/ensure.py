"""Getting a domain's triage classifier: trained at every dataset build, else from the store.

A build keeps its classifier in ``<build>/triage/``. A user who only ran ``ingest`` and then
``serve`` has no build: :func:`ensure_triage` then trains one from the stored issues (the same
question text and label table as a build) and says so in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from adaptune.dataset.artifacts import DatasetError, iter_examples, latest_build
from adaptune.dataset.gate import reject_reason
from adaptune.dataset.labels import table_for, triage_type
from adaptune.dataset.tasks import question_text, triage_example
from adaptune.errors import ConfigError
from adaptune.memory.embed import Embedder, default_embedder
from adaptune.store import Store
from adaptune.store.domains import resolve_domain
from adaptune.store.issues import select_issues
from adaptune.triage.classifier import TriageError, TriageModel, train_triage
from adaptune.types import Example, Issue

log = logging.getLogger(__name__)
FOLDER = "triage"
"""Where a build keeps its classifier."""


def ticket_question(title: str, body: str | None) -> str:
    """The classifier's input for a new ticket: the same text a dataset build would make."""
    now = datetime.now(UTC)
    issue = Issue("ticket", "ticket", 0, title, body, "open", now, now)
    return question_text(issue, max_chars=2000)[0]


def train_build_triage(
    folder: Path, examples: Sequence[Example], embedder: Embedder | None = None
) -> TriageModel | None:
    """Train and save the classifier of the build in ``folder`` (the build's last step).

    A build that already has one keeps it (builds are immutable). A missing embedding model or
    too few labelled examples leave the build without a classifier, with a log line.
    """
    if (folder / FOLDER / "manifest.json").exists():
        return None
    try:
        embedder = embedder or default_embedder()
    except ConfigError as exc:
        log.warning("no triage classifier for build %s: %s", folder.name, exc)
        return None
    model = train_triage(examples, embedder)
    if model is None:
        return None
    model.manifest["build"] = folder.name
    model.save(folder / FOLDER)
    metrics = model.manifest.get("heldout_metrics") or {}
    log.info(
        "triage classifier of build %s: %d labels, held-out accuracy %s",
        folder.name,
        len(model.labels),
        f"{metrics['accuracy']:.3f}" if metrics else "n/a",
    )
    return model


def stored_triage_examples(store: Store, domain: str) -> list[Example]:
    """Triage examples made directly from the domain's stored issues (no build needed)."""
    with store.begin() as conn:
        dom = resolve_domain(conn, domain)
        pairs = [tuple(s.split(":", 1)) for s in dom.sources]
        issues = list(select_issues(conn, repos=pairs, include_prs=False))
    table = table_for(
        [r for _s, r in pairs], store.settings.home / "domains" / dom.name / "labels.json"
    )
    return [
        triage_example(dom.name, i, lab)
        for i in issues
        if not reject_reason(i) and (lab := triage_type(i.labels, table, i.issue_type))
    ]


def ensure_triage(store: Store, domain: str, embedder: Embedder) -> TriageModel | None:
    """The domain's classifier: the latest build's, else one trained now (``None`` when the
    domain has too few labelled issues)."""
    try:
        build = latest_build(store.settings.home, domain)
    except DatasetError:
        build = None
    if build is not None:
        try:
            return TriageModel.load(build / FOLDER, embedder)
        except TriageError as exc:
            log.info("build %s: %s", build.name, exc)
            examples = list(iter_examples(build, "triage"))
            model = train_build_triage(build, examples, embedder)
            if model is not None:
                log.info(
                    "no triage classifier for domain %s: trained one from %d examples of build %s",
                    domain,
                    len(examples),
                    build.name,
                )
                return model
    examples = stored_triage_examples(store, domain)
    model = train_triage(examples, embedder)
    if model is None:
        log.info("no triage for domain %s: %d labelled issues are too few", domain, len(examples))
    else:
        log.info(
            "no triage classifier for domain %s: trained one from %d stored issues",
            domain,
            len(examples),
        )
    return model
