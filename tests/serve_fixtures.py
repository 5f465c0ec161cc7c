"""Shared set-up of the service tests: a store with issues, a dataset build, tiny adapters."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from adaptune.dataset import BuildConfig
from adaptune.ingest import ingest
from adaptune.ingest.files import file_source
from adaptune.pipeline import build_dataset
from adaptune.registry import promote, register
from adaptune.serve import create_app, serve_settings
from adaptune.store import Store
from test_compare import rows
from tiny_model import tiny_model, tiny_tokenizer

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "webhook-secret"


def seed_store(store: Store, tmp_path: Path, per_window: int = 6) -> None:
    """Ingest issues with fixing PRs (three quarters, repo o/r) and build the dataset."""
    path = tmp_path / "issues.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows(per_window)))
    ingest(file_source(path), store)
    build_dataset(store, config=BuildConfig(heldout=0.3))


def tiny_pair() -> tuple[Any, Any]:
    """The tiny tokenizer and model the generator serves."""
    tok = tiny_tokenizer()
    return tiny_model(tok), tok


def make_adapter(model: Any, folder: Path, seed: int) -> Path:
    """A LoRA adapter (random non-zero B) for the tiny model, saved in PEFT format."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(copy.deepcopy(model), lora).save_pretrained(folder)
    return folder


def register_adapter(store: Store, model: Any, tmp_path: Path, seed: int, prod: bool) -> str:
    """Register a tiny adapter in domain r; maybe promote it to production."""
    rec = register(
        store,
        "r",
        make_adapter(model, tmp_path / f"lora-{seed}", seed),
        strategy="adaptive",
        base_model="tiny",
    )
    if prod:
        promote(store, rec.version)
    return rec.version


def signed(body: dict, secret: str = SECRET) -> tuple[bytes, str]:
    """A JSON body and its X-Hub-Signature-256 header value."""
    raw = json.dumps(body).encode()
    return raw, "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def signed_app(store: Store, tmp_path: Path, max_body_bytes: int) -> FastAPI:
    """A seeded service with both webhook secrets set and no generator, for hostile input."""
    seed_store(store, tmp_path)
    settings = serve_settings(
        api_token=TOKEN,
        warm=False,
        generator="none",
        github_webhook_secret=SECRET,
        jira_webhook_secret=SECRET,
        max_body_bytes=max_body_bytes,
    )
    return create_app(store, settings)
