"""Triage: a classifier of a domain's issue types, trained on the project's own labels.

:func:`train_triage` trains one from triage examples, every dataset build saves one into its
folder (:func:`train_build_triage`) and :func:`ensure_triage` gives the service the latest one,
training it from the stored issues when there is no build yet.
"""

from __future__ import annotations

from adaptune.triage.classifier import TriageError, TriageModel, train_triage
from adaptune.triage.ensure import (
    ensure_triage,
    stored_triage_examples,
    ticket_question,
    train_build_triage,
)

__all__ = [
    "TriageError",
    "TriageModel",
    "ensure_triage",
    "stored_triage_examples",
    "ticket_question",
    "train_build_triage",
    "train_triage",
]
