"""A domain's dataset build as every caller wants it: feedback → examples → build → triage.

:func:`build_dataset` is what ``adaptune dataset build``, the worker's train job, the demo and
the tests call. It gathers the qa examples taught by feedback on served answers
(:func:`adaptune.feedback.examples.feedback_examples`), builds the dataset from the domain's
issues plus those (:func:`adaptune.dataset.build.build`), and trains the build's triage
classifier into its folder (:func:`adaptune.triage.train_build_triage`), which the service
loads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from adaptune.dataset.build import BuildConfig, BuildResult, build
from adaptune.feedback.examples import feedback_examples
from adaptune.store import Store
from adaptune.store.domains import resolve_domain
from adaptune.triage import train_build_triage


def build_dataset(
    store: Store,
    domain: str | None = None,
    config: BuildConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> BuildResult:
    """Build (or find, when identical) the dataset of ``domain``, feedback examples included,
    and train its triage classifier."""
    say = progress or (lambda _m: None)
    with store.begin() as conn:
        name = resolve_domain(conn, domain).name
    rejected: Counter = Counter()
    taught = feedback_examples(store, name, rejected)
    result = build(store, name, config, say, taught, rejected)
    say("triage classifier")
    train_build_triage(result.path, result.examples["triage"])
    counts = ", ".join(f"{k} {len(v)}" for k, v in result.examples.items())
    say(f"build {result.build_id}: {counts}")
    return result


__all__ = ["build_dataset"]
