"""Dataset: from stored issues to windowed training and evaluation sets.

:func:`build` turns a domain's issues into content-hashed builds of qa, triage and duplicates
examples (see :mod:`adaptune.dataset.build`); parsing lives in :mod:`adaptune.dataset.parse`
and secret scrubbing in :mod:`adaptune.dataset.scrub`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adaptune.dataset.build import BuildConfig, BuildResult


def build(*args: Any, **kwargs: Any) -> BuildResult:
    """Build a domain's dataset; see :func:`adaptune.dataset.build.build`."""
    from adaptune.dataset.build import build as _build

    return _build(*args, **kwargs)


__all__ = ["BuildConfig", "BuildResult", "build"]


def __getattr__(name: str) -> Any:
    if name in ("BuildConfig", "BuildResult"):
        from adaptune.dataset import build as module

        return getattr(module, name)
    raise AttributeError(name)
