"""Parsing issue text: pure functions from strings to facts, none of which raises on any input.

- :mod:`~adaptune.dataset.parse.sections`: issue-form sections, template boilerplate removed.
- :mod:`~adaptune.dataset.parse.traceback`: tracebacks and crash lines, error signatures, log cuts
  (reading helpers in :mod:`~adaptune.dataset.parse.pytrace` and
  :mod:`~adaptune.dataset.parse.crash`).
- :mod:`~adaptune.dataset.parse.environment`: Python, PyTorch, CUDA, package versions, GPUs, OS.
- :mod:`~adaptune.dataset.parse.models`: Hugging Face model ids and model families.
- :mod:`~adaptune.dataset.parse.links`: issues a pull request fixes, and duplicates.
"""
