"""Domains: named groups of sources, so that adaptune can serve several projects at once.

By default each repo or Jira project becomes its own domain the first time it is ingested,
named after the repo (``vllm`` for ``github:vllm-project/vllm``, ``proj`` for ``jira:PROJ``).
Repository names and project keys are checked (:func:`repo_problem`) before they are stored.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import Connection, select

import adaptune.store.schema as schema
from adaptune.errors import DomainError
from adaptune.types import Domain

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
# GitHub: owner (user or organisation) / repository, ASCII letters, digits, '-', '_', '.'.
_GITHUB_REPO = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")
# Jira project keys: an upper-case letter, then upper-case letters, digits or '_'.
_JIRA_KEY = re.compile(r"[A-Z][A-Z0-9_]{0,99}")


def repo_problem(source: str, repo: str) -> str | None:
    """What is wrong with ``repo`` as a repository of ``source``, or ``None`` when it is valid:
    ``OWNER/REPO`` of ASCII letters, digits, ``-``, ``_`` and ``.`` (no ``.`` or ``..`` part)
    for GitHub, a project key such as ``PROJ`` for Jira."""
    shown = repo if len(repo) <= 100 else f"{repo[:100]}..."
    if source == "github":
        parts = repo.split("/")
        if not _GITHUB_REPO.fullmatch(repo) or any(p in (".", "..") for p in parts):
            return f"'{shown}' is not a GitHub repository: write OWNER/REPO"
        return None
    if source == "jira":
        if not _JIRA_KEY.fullmatch(repo):
            return f"'{shown}' is not a Jira project key: write it as Jira does, e.g. PROJ"
        return None
    return f"'{source}' is not a source: github or jira"


def default_domain_name(source: str, repo: str) -> str:
    """The name a repo's domain gets when nobody chose one."""
    tail = repo.rsplit("/", 1)[-1].lower()
    name = re.sub(r"[^a-z0-9._-]+", "-", tail).strip("-.") or source
    return name[:100]


def parse_source(text: str) -> tuple[str, str]:
    """``github:owner/repo`` or ``jira:PROJ`` → ``(source, repo)``."""
    source, sep, repo = text.partition(":")
    if not sep or source not in ("github", "jira") or not repo:
        raise DomainError(f"'{text}' is not a source; write github:OWNER/REPO or jira:PROJECT.")
    if (problem := repo_problem(source, repo)) is not None:
        raise DomainError(f"{problem}.")
    return source, repo


def list_domains(conn: Connection) -> list[Domain]:
    """Every domain with its sources, by name."""
    d, s = schema.domains, schema.domain_sources
    rows = conn.execute(
        select(d.c.name, s.c.source, s.c.repo)
        .select_from(d.outerjoin(s, s.c.domain_id == d.c.id))
        .order_by(d.c.name, s.c.source, s.c.repo)
    )
    grouped: dict[str, list[str]] = {}
    for name, source, repo in rows:
        members = grouped.setdefault(name, [])
        if source:
            members.append(f"{source}:{repo}")
    return [Domain(name=n, sources=tuple(m)) for n, m in grouped.items()]


def _domain_id(conn: Connection, name: str) -> int | None:
    d = schema.domains
    return conn.execute(select(d.c.id).where(d.c.name == name)).scalar()


def add_domain(conn: Connection, name: str, sources: list[str] | None = None) -> Domain:
    """Create domain ``name`` (or extend it) with ``sources``; the caller commits."""
    if not _NAME.match(name):
        raise DomainError(
            f"'{name}' is not a domain name: use lower-case letters, digits, '.', '_' or '-'."
        )
    dom_id = _domain_id(conn, name)
    if dom_id is None:
        now = datetime.now(UTC)
        dom_id = conn.execute(
            schema.domains.insert().values(name=name, created_at=now)
        ).inserted_primary_key[0]
    for text in sources or []:
        assign_source(conn, name, *parse_source(text), _domain=dom_id)
    return next(d for d in list_domains(conn) if d.name == name)


def assign_source(
    conn: Connection, name: str, source: str, repo: str, _domain: int | None = None
) -> None:
    """Put ``(source, repo)`` in domain ``name``; refused when another domain holds it."""
    dom_id = _domain or _domain_id(conn, name)
    if dom_id is None:
        raise DomainError(f"No domain '{name}'; create it with `adaptune domains add {name}`.")
    current = domain_of(conn, source, repo)
    if current == name:
        return
    if current is not None:
        raise DomainError(f"{source}:{repo} already belongs to domain '{current}'.")
    conn.execute(schema.domain_sources.insert().values(domain_id=dom_id, source=source, repo=repo))


def domain_of(conn: Connection, source: str, repo: str) -> str | None:
    """The domain that holds ``(source, repo)``, if any."""
    d, s = schema.domains, schema.domain_sources
    return conn.execute(
        select(d.c.name)
        .select_from(s.join(d, s.c.domain_id == d.c.id))
        .where(s.c.source == source, s.c.repo == repo)
    ).scalar()


def ensure_domain(conn: Connection, source: str, repo: str, name: str | None = None) -> str:
    """The domain of ``(source, repo)``, creating or assigning one when it has none."""
    current = domain_of(conn, source, repo)
    if current is not None and (name is None or name == current):
        return current
    target = name or default_domain_name(source, repo)
    if name is None and _domain_id(conn, target) is not None:
        target = default_domain_name(source, repo.replace("/", "-"))
    add_domain(conn, target)
    assign_source(conn, target, source, repo)
    return target


def resolve_domain(conn: Connection, name: str | None) -> Domain:
    """The domain called ``name``, or the only one when ``name`` is ``None``."""
    domains = list_domains(conn)
    if name is not None:
        for dom in domains:
            if dom.name == name:
                return dom
        known = ", ".join(d.name for d in domains) or "none yet"
        raise DomainError(f"No domain '{name}' (known: {known}).")
    if len(domains) == 1:
        return domains[0]
    if not domains:
        raise DomainError("No domain yet: ingest a repository first (`adaptune ingest ...`).")
    names = ", ".join(d.name for d in domains)
    raise DomainError(f"Several domains exist ({names}); choose one with --domain.")
