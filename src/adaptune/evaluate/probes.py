"""Memory probes: issues that recur a trained one. Does the model answer with the trained fix?

Three kinds of probe, each answered by a fix the adapter was trained on:

- ``signature``: a trained issue asked again as its title and error signature only;
- ``reworded``: a trained issue asked again with its body dropped and its title reworded
  (``Seeing this again: …``), keeping the environment line;
- ``recurrence``: a later, untrained issue with the same error signature as a trained one
  (the latest trained fix known by then is the reference).

They are scored with the fix-ranking machinery: a probe is a hit when its trained fix ranks
first among the candidates drawn from the trained fixes (:func:`probe_hits`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from adaptune.evaluate.ranking import fix_ranking
from adaptune.types import Example

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

REWORDED = "Seeing this again: {title}"
"""How ``reworded`` probes rephrase the title."""


def memory_probes(
    examples: Sequence[Example], trained_windows: Collection[str] | None = None
) -> list[Example]:
    """Probes for the qa examples trained on: ``split == "train"`` (in ``trained_windows``).

    Every other qa example is a candidate for a ``recurrence`` probe. Probes have
    ``split="probe"``, ``meta["probe"]`` (the kind) and ``meta["trained_id"]``.
    """
    qa = [e for e in examples if e.task == "qa"]
    trained = [e for e in qa if _trained(e, trained_windows)]
    probes = []
    for ex in trained:
        title, sig = _title(ex), ex.signature
        probes.append(
            _probe(ex, ex, "signature", f"Title: {title}" + (f"\n\n{sig}" if sig else ""))
        )
        env = ex.meta.get("environment")
        reworded = f"Title: {REWORDED.format(title=title)}" + (
            f"\n\nEnvironment: {env}" if env else ""
        )
        probes.append(_probe(ex, ex, "reworded", reworded))
    later = [e for e in qa if not _trained(e, trained_windows)]
    return probes + recurrences(trained, later)


def recurrences(trained: Sequence[Example], later: Sequence[Example]) -> list[Example]:
    """``recurrence`` probes: later issues sharing an error signature with a trained one."""
    by_signature: dict[str, list[Example]] = defaultdict(list)
    for ex in trained:
        if ex.signature:
            by_signature[ex.signature].append(ex)
    out = []
    for ex in later:
        known = [t for t in by_signature.get(ex.signature or "", ()) if t.known_at <= ex.known_at]
        if known:
            latest = max(known, key=lambda t: (t.known_at, t.id))
            out.append(_probe(ex, latest, "recurrence", ex.question))
    return out


def probe_hits(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    probes: Sequence[Example],
    trained: Sequence[Example],
    **ranking: Any,
) -> float:
    """Share of probes whose trained fix ranks first among fixes of ``trained``.

    ``ranking`` goes to :func:`~adaptune.evaluate.ranking.fix_ranking` (candidates,
    hard negatives, embedder, caps …), which gives per-probe ranks when those are needed.
    """
    return fix_ranking(model, tokenizer, probes, pool=trained, **ranking).acc_at_1


def _trained(ex: Example, windows: Collection[str] | None) -> bool:
    return ex.split == "train" and (windows is None or ex.window in windows)


def _title(ex: Example) -> str:
    return str(ex.meta.get("title") or ex.question.split("\n", 1)[0].removeprefix("Title: "))


def _probe(asked: Example, trained: Example, kind: str, question: str) -> Example:
    """A probe asking ``question`` (from ``asked``) whose reference is ``trained``'s fix."""
    return Example(
        id=f"probe:{kind}:{asked.id}",
        task="qa",
        domain=asked.domain,
        issue=asked.issue,
        question=question,
        answer=trained.answer,
        known_at=asked.known_at,
        window=asked.window,
        split="probe",
        solution_source=trained.solution_source,
        signature=asked.signature,
        meta={"probe": kind, "trained_id": trained.id, "title": _title(asked)},
    )
