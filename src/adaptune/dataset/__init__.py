"""Dataset: from stored issues to windowed training and evaluation sets.

:func:`build` turns a domain's issues, plus the feedback examples it is given, into
content-hashed builds of qa, triage and duplicates examples (see :mod:`adaptune.dataset.build`);
:func:`adaptune.pipeline.build_dataset` gathers those examples and trains the build's triage
classifier around it. Parsing lives in :mod:`adaptune.dataset.parse` and secret scrubbing in
:mod:`adaptune.dataset.scrub`.
"""

from __future__ import annotations

from adaptune.dataset.build import BuildConfig, BuildResult, build

__all__ = ["BuildConfig", "BuildResult", "build"]
