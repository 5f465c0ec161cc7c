"""The service: tickets in, answers, triage and similar issues out; signed webhooks; feedback.

``create_app`` builds the FastAPI app; ``adaptune serve`` runs it under uvicorn; the worker
(:mod:`adaptune.jobs`) trains when enough new data has arrived.
"""

from __future__ import annotations

from adaptune.serve.app import create_app
from adaptune.serve.settings import ServeSettings, serve_settings

__all__ = ["ServeSettings", "create_app", "serve_settings"]
