"""A training-only ``forward`` swapped into a model's modules for the length of a run.

:mod:`~adaptune.train.fast.mlp`, :mod:`~adaptune.train.fast.norm` and
:mod:`~adaptune.train.fast.rope_attention` replace the forward of frozen MLPs, norms and
attention layers while training. Each module gets a subclass of its own class whose ``forward``
is the replacement, and its class back on exit, rather than an instance ``forward``:
transformers 5 with the ``kernels`` package runs ``kernelize`` on every ``train()``/``eval()``
of a model loaded with kernels on, and that resets the instance ``forward`` of the layers it
knows (RMSNorm among them) to their class's. The replacement calls
``super(type(self), self).forward(...)`` for the module's own computation (outside training).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

_SUBCLASSES: dict[tuple[type, Callable[..., Any]], type] = {}


def _subclass(cls: type, forward: Callable[..., Any]) -> type:
    """``cls`` with ``forward`` as its ``forward`` (one subclass per class and forward)."""
    key = (cls, forward)
    if key not in _SUBCLASSES:
        attrs = {"forward": forward, "__module__": forward.__module__, "__doc__": cls.__doc__}
        _SUBCLASSES[key] = type(f"Frozen{cls.__name__}", (cls,), attrs)
    return _SUBCLASSES[key]


@contextmanager
def training_forward(
    modules: Iterable[nn.Module],
    forward: Callable[..., Any],
    same: Callable[[nn.Module], bool],
) -> Iterator[int]:
    """Inside, ``modules`` run ``forward``; yields how many were swapped. ``same(module)`` says
    whether ``forward`` computes what the module's own does: checked on one module of each
    class, and a class that fails keeps its own forward."""
    candidates = list(modules)
    one_each = {type(m): m for m in reversed(candidates)}
    agree = {cls for cls, module in one_each.items() if same(module)}
    swapped = [m for m in candidates if type(m) in agree]
    classes = [type(m) for m in swapped]
    for module, cls in zip(swapped, classes, strict=True):
        module.__class__ = _subclass(cls, forward)
    try:
        yield len(swapped)
    finally:
        for module, cls in zip(swapped, classes, strict=True):
            module.__class__ = cls
