"""The service's settings, read from the environment once at start-up.

Every secret here (API token, webhook secrets) is kept out of ``repr`` so that it can never
reach a log line or an error message.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from adaptune.errors import ConfigError


class ServeSettings(BaseModel):
    """How the service behaves; :func:`serve_settings` reads it from ``ADAPTUNE_*`` variables."""

    model_config = ConfigDict(frozen=True)

    api_token: SecretStr | None = Field(
        None, description="ADAPTUNE_API_TOKEN: bearer token with every scope (write, admin)."
    )
    open_reads: bool = Field(
        False,
        description="ADAPTUNE_OPEN_READS: GET endpoints answer without a token (off by default: "
        "reads need a token with the read scope, the dashboard a log-in; a token that is sent "
        "and wrong is refused either way).",
    )
    github_webhook_secret: SecretStr | None = Field(
        None, description="ADAPTUNE_GITHUB_WEBHOOK_SECRET: HMAC key of GitHub deliveries."
    )
    jira_webhook_secret: SecretStr | None = Field(
        None, description="ADAPTUNE_JIRA_WEBHOOK_SECRET: HMAC key of Jira deliveries."
    )
    max_body_bytes: int = Field(
        1_000_000, ge=1024, description="ADAPTUNE_MAX_BODY_BYTES: larger bodies get 413."
    )
    generator: str = Field(
        "auto",
        pattern="^(auto|transformers|llamacpp|openai|none)$",
        description="ADAPTUNE_GENERATOR: transformers (in process), llamacpp (in process, GGUF), "
        "openai (an OpenAI-compatible server such as vLLM with --enable-lora), none (no "
        "generation), or auto: llamacpp when it is installed and the model is a GGUF (the "
        "default model or ADAPTUNE_GGUF), transformers otherwise.",
    )
    gguf: str | None = Field(
        None,
        description="ADAPTUNE_GGUF: base model GGUF for llamacpp (default: the bundled model); "
        "ADAPTUNE_MODEL then names the matching Hugging Face folder for the tokenizer.",
    )
    model: str | None = Field(
        None, description="ADAPTUNE_MODEL: base model path or id (default: the bundled model)."
    )
    openai_base_url: str | None = Field(
        None, description="ADAPTUNE_OPENAI_BASE_URL: e.g. http://127.0.0.1:8000/v1."
    )
    openai_api_key: SecretStr | None = Field(None, description="ADAPTUNE_OPENAI_API_KEY.")
    max_new_tokens: int = Field(
        128, ge=1, le=2048, description="ADAPTUNE_MAX_NEW_TOKENS: default answer length."
    )
    ab_share: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="ADAPTUNE_AB_SHARE: share of tickets the candidate answers.",
    )
    similar_k: int = Field(5, ge=1, le=50, description="ADAPTUNE_SIMILAR_K: similar issues shown.")
    context_k: int = Field(
        2, ge=0, le=10, description="ADAPTUNE_CONTEXT_K: resolved issues put in the prompt."
    )
    duplicate_threshold: float = Field(
        0.85, ge=0.0, le=1.0, description="ADAPTUNE_DUPLICATE_THRESHOLD: cosine for duplicate_of."
    )
    cors_origins: tuple[str, ...] = Field(
        (), description="ADAPTUNE_CORS_ORIGINS: comma-separated; empty keeps CORS closed."
    )
    rate_limit_per_minute: int = Field(
        0, ge=0, description="ADAPTUNE_RATE_LIMIT: /v1/tickets per client per minute (0: off)."
    )
    notify_urls: tuple[str, ...] = Field(
        (), description="ADAPTUNE_NOTIFY_URLS: comma-separated notification webhooks."
    )
    notify_secret: SecretStr | None = Field(
        None, description="ADAPTUNE_NOTIFY_SECRET: HMAC key of outgoing notifications."
    )
    notify_format: str = Field(
        "slack", pattern="^(slack|json)$", description="ADAPTUNE_NOTIFY_FORMAT: slack or json."
    )
    warm: bool = Field(
        True, description="ADAPTUNE_WARM: build indexes and classifiers at start-up."
    )
    webhook_new_domains: bool = Field(
        False,
        description="ADAPTUNE_WEBHOOK_NEW_DOMAINS: a signed delivery from a repository or Jira "
        "project that no domain holds creates its domain (off: it is refused with 422; add the "
        "repository with `adaptune domains add`).",
    )


_ENV = {
    "api_token": "ADAPTUNE_API_TOKEN",
    "open_reads": "ADAPTUNE_OPEN_READS",
    "github_webhook_secret": "ADAPTUNE_GITHUB_WEBHOOK_SECRET",
    "jira_webhook_secret": "ADAPTUNE_JIRA_WEBHOOK_SECRET",
    "max_body_bytes": "ADAPTUNE_MAX_BODY_BYTES",
    "generator": "ADAPTUNE_GENERATOR",
    "model": "ADAPTUNE_MODEL",
    "gguf": "ADAPTUNE_GGUF",
    "openai_base_url": "ADAPTUNE_OPENAI_BASE_URL",
    "openai_api_key": "ADAPTUNE_OPENAI_API_KEY",
    "max_new_tokens": "ADAPTUNE_MAX_NEW_TOKENS",
    "ab_share": "ADAPTUNE_AB_SHARE",
    "similar_k": "ADAPTUNE_SIMILAR_K",
    "context_k": "ADAPTUNE_CONTEXT_K",
    "duplicate_threshold": "ADAPTUNE_DUPLICATE_THRESHOLD",
    "cors_origins": "ADAPTUNE_CORS_ORIGINS",
    "rate_limit_per_minute": "ADAPTUNE_RATE_LIMIT",
    "notify_urls": "ADAPTUNE_NOTIFY_URLS",
    "notify_secret": "ADAPTUNE_NOTIFY_SECRET",
    "notify_format": "ADAPTUNE_NOTIFY_FORMAT",
    "warm": "ADAPTUNE_WARM",
    "webhook_new_domains": "ADAPTUNE_WEBHOOK_NEW_DOMAINS",
}
_LISTS = {"cors_origins", "notify_urls"}


def serve_settings(**overrides: object) -> ServeSettings:
    """Settings from the environment, with ``overrides`` (tests, CLI options) on top."""
    raw: dict[str, object] = {}
    for field, var in _ENV.items():
        value = os.environ.get(var)
        if value is None or value == "":
            continue
        raw[field] = (
            tuple(v.strip() for v in value.split(",") if v.strip()) if field in _LISTS else value
        )
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ServeSettings(**raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        var = _ENV.get(field, field)
        raise ConfigError(f"{var}: {first['msg']}.") from None
