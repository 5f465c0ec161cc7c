"""Background jobs: a queue in the database with leases, the worker that runs it, and the
new-data trigger that queues training.

The HTTP service queues jobs (:func:`enqueue`) and shows them (:func:`get_job`,
:func:`list_jobs`, :func:`queue_depth`); ``adaptune worker`` runs them (:class:`Worker`) with
the handlers registered per job kind from above (:func:`register_handler`: the pipeline's
``train`` job).
"""

from __future__ import annotations

from adaptune.jobs.config import WorkerConfig
from adaptune.jobs.queue import (
    ACTIVE,
    STATES,
    Job,
    JobView,
    cancel,
    claim,
    enqueue,
    fail,
    finish,
    get_job,
    list_jobs,
    queue_depth,
    renew,
)
from adaptune.jobs.trigger import maybe_enqueue, pending_data
from adaptune.jobs.worker import Handler, Worker, register_handler, registered_handlers

__all__ = [
    "ACTIVE",
    "STATES",
    "Handler",
    "Job",
    "JobView",
    "Worker",
    "WorkerConfig",
    "cancel",
    "claim",
    "enqueue",
    "fail",
    "finish",
    "get_job",
    "list_jobs",
    "maybe_enqueue",
    "pending_data",
    "queue_depth",
    "register_handler",
    "registered_handlers",
    "renew",
]
