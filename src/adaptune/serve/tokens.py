"""API tokens with scopes, stored as SHA-256 hashes (the token itself is shown once).

Scopes: ``read`` (GET endpoints when reads are not open), ``write`` (tickets, feedback) and
``admin`` (promote, rollback, training jobs). ``ADAPTUNE_API_TOKEN`` holds every scope.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from adaptune.errors import ConfigError
from adaptune.store import Store, schema

SCOPES = ("read", "write", "admin")
PREFIX = "adt_"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """Who a valid token belongs to and what it may do."""

    name: str
    scopes: frozenset[str]


def digest(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(store: Store, name: str, scopes: Sequence[str]) -> str:
    """Create a token named ``name``; returns the token, which is never stored in clear."""
    bad = sorted(set(scopes) - set(SCOPES))
    if bad or not scopes:
        raise ConfigError(
            f"Scopes must be among {', '.join(SCOPES)}; got {', '.join(bad) or 'none'}."
        )
    token = PREFIX + secrets.token_urlsafe(32)
    try:
        with store.begin() as conn:
            conn.execute(
                schema.api_tokens.insert().values(
                    name=name,
                    token_sha256=digest(token),
                    scopes=json.dumps(sorted(set(scopes))),
                    created_at=datetime.now(UTC),
                )
            )
    except IntegrityError:
        raise ConfigError(
            f"A token named {name!r} exists; revoke it or pick another name."
        ) from None
    return token


def revoke_token(store: Store, name: str) -> bool:
    """Revoke the token named ``name``; False when there is no such active token."""
    t = schema.api_tokens
    with store.begin() as conn:
        done = conn.execute(
            update(t)
            .where(t.c.name == name, t.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    return done.rowcount > 0


def list_tokens(store: Store) -> list[dict]:
    """Every token's name, scopes, creation and revocation time (never the token)."""
    t = schema.api_tokens
    with store.begin() as conn:
        rows = conn.execute(select(t).order_by(t.c.created_at)).all()
    return [
        {
            "name": r.name,
            "scopes": json.loads(r.scopes),
            "created_at": r.created_at.isoformat(),
            "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
        }
        for r in rows
    ]


def lookup(store: Store, token: str) -> TokenInfo | None:
    """The active stored token equal to ``token``, found by its hash (no timing leak)."""
    t = schema.api_tokens
    with store.begin() as conn:
        row = conn.execute(
            select(t.c.name, t.c.scopes).where(
                t.c.token_sha256 == digest(token), t.c.revoked_at.is_(None)
            )
        ).first()
    return TokenInfo(row.name, frozenset(json.loads(row.scopes))) if row else None


def lookup_digest(store: Store, token_sha256: str) -> TokenInfo | None:
    """The active stored token whose digest is ``token_sha256`` (a login session's token)."""
    t = schema.api_tokens
    with store.begin() as conn:
        row = conn.execute(
            select(t.c.name, t.c.scopes).where(
                t.c.token_sha256 == token_sha256, t.c.revoked_at.is_(None)
            )
        ).first()
    return TokenInfo(row.name, frozenset(json.loads(row.scopes))) if row else None


def has_tokens(store: Store) -> bool:
    """Whether any active token exists in the database."""
    t = schema.api_tokens
    with store.begin() as conn:
        return (
            conn.execute(select(t.c.id).where(t.c.revoked_at.is_(None)).limit(1)).first()
            is not None
        )
