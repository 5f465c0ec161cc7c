"""What the service sends back: every text passes the dataset's secret scrubber first.

Tickets, feedback, similar issues, answers, job errors and adapter metrics hold text that came
from users (or from a model that read it). The store keeps it as it came (the dataset builder
scrubs on its own), and every response and page shows it through :func:`public`, the same
:func:`adaptune.pages.clean_text` the pages use: control characters removed, secrets replaced
by typed placeholders such as ``<GITHUB_TOKEN>``.
"""

from __future__ import annotations

from typing import TypeVar

from adaptune.pages import clean_text

T = TypeVar("T")


def public(value: T) -> T:
    """``value`` with every string inside it (dict values and keys, lists, tuples) cleaned."""
    if isinstance(value, str):
        return clean_text(value)  # type: ignore[return-value]
    if isinstance(value, dict):
        return {  # type: ignore[return-value]
            (clean_text(k) if isinstance(k, str) else k): public(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(public(v) for v in value)  # type: ignore[return-value]
    return value
