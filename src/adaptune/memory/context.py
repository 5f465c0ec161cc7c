"""Retrieved context for training and evaluation examples ("train as it will serve").

Each qa example gets the ``k`` most similar *resolved, trained-on* issues with their fixes, taken
only from training examples whose answer was known no later than the example's own, and never
the example itself: the model learns to use the memory, not to recite, and never sees the future.
:func:`load_qa` reads a build's qa examples with that context, as training and evaluation both
read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from adaptune.dataset.artifacts import find_build, iter_examples, read_manifest
from adaptune.dataset.windows import resolve_window
from adaptune.errors import ConfigError
from adaptune.memory.embed import Embedder, default_embedder
from adaptune.memory.index import SimilarIndex
from adaptune.store import Store
from adaptune.store.domains import resolve_domain
from adaptune.types import Example

FIX_CHARS = 600
"""Characters of each retrieved fix put in the prompt."""
CONTEXTS = ("retrieved", "none")
"""``retrieved``: similar earlier resolved issues in every prompt; ``none``: the question alone."""


@dataclass(frozen=True, slots=True)
class QaSet:
    """A domain's qa examples of one build, as training and evaluation read them."""

    domain: str
    build: str
    """The build's id (its folder's name)."""
    windows: tuple[str, ...]
    """The build's qa windows, oldest first."""
    window: str
    """The window asked for (the latest when none was)."""
    examples: tuple[Example, ...]
    """Every qa example of the build, with ``meta["context"]`` when ``context`` is retrieved."""
    context: str
    """``retrieved`` or ``none``."""


def load_qa(
    store: Store,
    domain: str | None,
    context: str = "retrieved",
    window: str | None = None,
    build_id: str | None = None,
) -> QaSet:
    """The qa examples of ``domain``'s build ``build_id`` (else its latest) with the retrieved
    context when ``context`` is ``retrieved``; ``window`` (a name or 1-based position, ``None``:
    the latest) must be one of the build's windows."""
    if context not in CONTEXTS:
        raise ConfigError(f"--context must be retrieved or none, not {context!r}.")
    with store.begin() as conn:
        name = resolve_domain(conn, domain).name
    folder = find_build(store.settings.home, name, build_id)
    windows = tuple(w["name"] for w in read_manifest(folder)["tasks"]["qa"]["windows"])
    target = resolve_window(windows, window)
    examples = list(iter_examples(folder, "qa"))
    if context == "retrieved":
        examples = with_context(examples, memory_index(examples))
    return QaSet(name, folder.name, windows, target, tuple(examples), context)


def _title(ex: Example) -> str:
    return str(ex.meta.get("title") or ex.question.split("\n", 1)[0].removeprefix("Title: "))


def memory_index(examples: Sequence[Example], embedder: Embedder | None = None) -> SimilarIndex:
    """An index over the training qa examples: key = example id, payload = (title, fix)."""
    train = [e for e in examples if e.task == "qa" and e.split == "train"]
    index = SimilarIndex(embedder or default_embedder())
    index.add(
        [e.id for e in train],
        [e.question for e in train],
        [e.known_at for e in train],
        [(_title(e), e.answer[:FIX_CHARS]) for e in train],
    )
    return index


def with_context(examples: Sequence[Example], index: SimilarIndex, k: int = 2) -> list[Example]:
    """The examples with ``meta["context"]``: ``k`` earlier similar issues and their fixes."""
    hits = index.search(
        [e.question for e in examples],
        k=k,
        before=[e.known_at for e in examples],
        exclude=[{e.id} for e in examples],
    )
    out = []
    for ex, found in zip(examples, hits, strict=True):
        context = [list(h.payload) for h in found]
        out.append(
            replace(ex, meta={**ex.meta, "context": context, "context_ids": [h.key for h in found]})
        )
    return out
