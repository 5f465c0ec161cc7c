"""Secrets and personal data out of issue text, each replaced by a typed placeholder.

Typed rules come first (``ghp_…`` → ``<GITHUB_TOKEN>``, ``hf_…`` → ``<HF_TOKEN>``, ``sk-…`` →
``<API_KEY>``, AWS keys → ``<AWS_KEY>``, key blocks → ``<PRIVATE_KEY>``, JWTs → ``<JWT>``, Slack
tokens → ``<SLACK_TOKEN>``, ``password=…``-style values → ``<SECRET>``, addresses → ``<EMAIL>``).
Then detect-secrets' pattern plugins look at every line that still holds a match for one of
them, and whatever they flag becomes ``<SECRET>``. Its high-entropy and keyword plugins are not
used: they flag commit ids, hashes and ordinary code.

Values that only look like secrets are kept: ``token=None``, ``api_key="EMPTY"``,
``pad_token = tokenizer.eos_token``, commit ids, versions and placeholders such as
``<YOUR_TOKEN>``. Scrubbing is idempotent: a scrubbed text comes back unchanged.
"""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from detect_secrets.plugins.base import RegexBasedDetector

Found = list[tuple[str, str]]
"""``(kind, value)`` pairs, in the order they were replaced."""
Rule = tuple[str, re.Pattern[str], str, int, tuple[str, ...]]
"""``(kind, pattern, placeholder, group of the value, lower-case hints that must occur)``."""

_BEGIN = r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----"
_TOKEN_KEYS = r"password|passwd|pwd|token|secret|api[_-]?key|access[_-]?key|secret[_-]?key"


def _rule(kind: str, pattern: str, placeholder: str, hints: str, group: int = 0) -> Rule:
    """A typed rule; ``hints`` are ``|``-separated lower-case strings, one of which must occur."""
    return kind, re.compile(pattern), placeholder, group, tuple(hints.split("|"))


_RULES: tuple[Rule, ...] = (
    _rule(
        "private_key",
        # The whole block when it ends; else up to a blank line (a pasted key may be cut off).
        rf"{_BEGIN}[\s\S]*?-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----"
        rf"|{_BEGIN}[\s\S]*?(?=\n[ \t]*\n|\Z)",
        "<PRIVATE_KEY>",
        "private key",
    ),
    _rule("jwt", r"(?<![\w-])eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}", "<JWT>", "eyj"),
    _rule(
        "github_token",
        r"(?<!\w)(?:gh[pousr]_[A-Za-z0-9]{20,255}|github_pat_\w{20,255})(?!\w)",
        "<GITHUB_TOKEN>",
        "ghp_|gho_|ghu_|ghs_|ghr_|github_pat_",
    ),
    _rule("hf_token", r"(?<!\w)hf_[A-Za-z0-9]{30,}(?!\w)", "<HF_TOKEN>", "hf_"),
    _rule(
        "api_key",
        r"(?<![\w-])sk-(?:ant-(?:api\d\d-)?|proj-|svcacct-|admin-)?"
        r"(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{20,}",
        "<API_KEY>",
        "sk-",
    ),
    _rule(
        "slack_token",
        r"xox[abposr]-[A-Za-z0-9-]{10,}|https://hooks\.slack\.com/services/[\w/]+",
        "<SLACK_TOKEN>",
        "xox|hooks.slack.com",
    ),
    _rule(
        "aws_key",
        r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Z0-9])",
        "<AWS_KEY>",
        "akia|asia|abia|acca|a3t",
    ),
    _rule(
        "aws_key",
        r"(?i)(?:aws_?secret_?(?:access_?)?key|secret_?access_?key)[\"']?\s*[:=]\s*[\"']?"
        r"([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
        "<AWS_KEY>",
        "secret",
        group=1,
    ),
    _rule(
        "bearer",
        r"(?i)\bBearer\s+((?=[\w.~+/=-]*\d)[\w.~+/=-]{16,})",
        "<SECRET>",
        "bearer",
        group=1,
    ),
    _rule("url_password", r"://[^\s:/@<>\"'`]+:([^\s/@<>\"'`]+)@", "<SECRET>", "://", group=1),
)
_VALUE = r"([\"']?)([^\s\"'<>,;(){}\[\]]+)"
# Matched against the lower-cased text (much faster than IGNORECASE); values come from the original.
_ASSIGNMENT = re.compile(rf"({_TOKEN_KEYS})([\"']?\s*(?:=>|:=|=|:)\s*){_VALUE}\3")
_CLI_FLAG = re.compile(rf"(--(?:[\w-]*[_-])?(?:{_TOKEN_KEYS}))([= ]\s*){_VALUE}\3")
_PLACEHOLDER_VALUE = re.compile(
    r"^[<$%{*\[(]|x{3,}|\.\.\.|^(?:your|my[_-]|example|dummy|fake|changeme|redacted)"
    r"|^(?:none|null|true|false|nil|undefined|str|string|bytes|object|optional|bool"
    r"|u?int\d*|b?float\d*)$",
    re.IGNORECASE,
)
_EXPRESSION = re.compile(
    r"^(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|[A-Z][A-Z0-9_]*|[\d.,]+[A-Za-z%]{0,3}|[a-z_]+)$"
)
_EMAIL_AT = re.compile(r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.([A-Za-z]{2,})(?![\w-])")
_LOCAL_PART = re.compile(r"[A-Za-z0-9._%+-]{1,64}$")
_NOT_EMAIL_TLDS = frozenset(
    {"py", "pt", "bin", "json", "txt", "md", "cpp", "cu", "gguf", "yaml", "service", "socket"}
)
_NOT_EMAILS = frozenset({"git@github.com", "git@gitlab.com", "git@hf.co", "git@bitbucket.org"})
_PLACEHOLDER = re.compile(r"<[A-Z_]+>")


def _looks_secret(value: str, key: str, quoted: bool) -> bool:
    """Whether an assigned value is a credential rather than code, a type or a placeholder."""
    if _PLACEHOLDER_VALUE.search(value) or (not quoted and _EXPRESSION.match(value)):
        return False
    has_digit = any(c.isdigit() for c in value)
    if re.search(r"pass|pwd", key, re.IGNORECASE):
        return len(value) >= 4 and (quoted or has_digit)
    has_letter = any(c.isalpha() for c in value)
    return len(value) >= 8 and has_digit and has_letter


def _assignment(pattern: re.Pattern[str], text: str, found: Found | None) -> str:
    """``password=…``, ``"api_key": "…"``, ``--token …``: the key stays, the value goes.

    A rejected value is not skipped over: it may itself be the key of the next assignment.
    """
    low = text.lower()
    if len(low) != len(text):
        pattern, low = re.compile(pattern.pattern, re.IGNORECASE), text
    pieces, last, pos = [], 0, 0
    while match := pattern.search(low, pos):
        key, quote, value = (text[match.start(g) : match.end(g)] for g in (1, 3, 4))
        if not _looks_secret(value, key, bool(quote)):
            pos = match.end(2)
            continue
        if found is not None:
            found.append(("secret", value))
        pieces += [text[last : match.start(4)], "<SECRET>"]
        last = pos = match.end(4)
    return "".join([*pieces, text[last:]])


def _apply(rule: Rule, text: str, found: Found | None) -> str:
    """One typed rule over ``text``: the value group becomes the placeholder."""
    kind, pattern, placeholder, group, _hints = rule

    def replace(match: re.Match[str]) -> str:
        """The match with its value group swapped for the placeholder."""
        if found is not None:
            found.append((kind, match.group(group)))
        whole = match.group(0)
        start, end = match.start(group) - match.start(), match.end(group) - match.start()
        return whole[:start] + placeholder + whole[end:]

    return pattern.sub(replace, text)


def _emails(text: str, found: Found | None) -> str:
    """Addresses → ``<EMAIL>`` (found from each ``@``, which is far cheaper than from each word)."""
    pieces, last = [], 0
    for match in _EMAIL_AT.finditer(text):
        local = _LOCAL_PART.search(text, max(last, match.start() - 64), match.start())
        if local is None or match.group(1).lower() in _NOT_EMAIL_TLDS:
            continue
        start = local.start()
        address = text[start : match.end()]
        if address.lower() in _NOT_EMAILS or address.startswith("."):
            continue
        if found is not None:
            found.append(("email", address))
        pieces += [text[last:start], "<EMAIL>"]
        last = match.end()
    return "".join([*pieces, text[last:]])


_PLUGIN_HINTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "github_token": ("GitHubTokenDetector", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    "gitlab_token": ("GitLabTokenDetector", ("gl", "gr1348941")),
    "aws": ("AWSKeyDetector", ("a3t", "abia", "acca", "akia", "asia", "aws")),
    "private_key": ("PrivateKeyDetector", ("private key", "putty-user-key")),
    "jwt": ("JwtTokenDetector", ("eyj",)),
    "slack": ("SlackDetector", ("xox", "hooks.slack.com")),
    "openai": ("OpenAIDetector", ("t3blbkfj",)),
    "stripe": ("StripeDetector", ("k_live_",)),
    "sendgrid": ("SendGridDetector", ("sg.",)),
    "pypi_token": ("PypiTokenDetector", ("pypi-ag",)),
    "square_oauth": ("SquareOAuthDetector", ("sq0csp-",)),
    "azure_storage_key": ("AzureStorageKeyDetector", ("accountkey=",)),
    "npm": ("NpmDetector", ("_authtoken",)),
    "basic_auth": ("BasicAuthDetector", ("://",)),
    "discord": ("DiscordBotTokenDetector", (".",)),
    "twilio": ("TwilioKeyDetector", ("ac", "sk")),
    "mailchimp": ("MailchimpDetector", ("-us",)),
}
"""detect-secrets plugins by module, each with lower-case strings one of which its matches hold."""


def _load_plugins() -> tuple[tuple[RegexBasedDetector, tuple[str, ...]], ...]:
    """The detect-secrets plugins this installation has (none when it is not installed)."""
    plugins = []
    for module, (name, hints) in _PLUGIN_HINTS.items():
        try:
            cls = getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), name)
        except (ImportError, AttributeError):
            continue
        plugins.append((cls(), hints))
    return tuple(plugins)


_PLUGINS = _load_plugins()


def _value_span(match: re.Match[str], flagged: set[str]) -> tuple[int, int] | None:
    """The part of a plugin's match that is the secret: its longest flagged group, else all."""
    groups = [
        (match.end(g) - match.start(g), match.start(g), match.end(g))
        for g in range(1, (match.lastindex or 0) + 1)
        if match.group(g) and match.group(g) in flagged and len(match.group(g)) >= 8
    ]
    if groups:
        _length, start, end = max(groups)
        return start, end
    whole = match.group(0)
    return match.span() if any(value in whole for value in flagged) else None


def _line_at(text: str, pos: int) -> str:
    """The line of ``text`` that holds offset ``pos``."""
    end = text.find("\n", pos)
    return text[text.rfind("\n", 0, pos) + 1 : len(text) if end < 0 else end]


def _plugin_spans(text: str) -> list[tuple[int, int, str]]:
    """Spans that a detect-secrets plugin flags on their line, with the plugin's secret type."""
    low = text.lower()
    spans = []
    for plugin, hints in _PLUGINS:
        if not any(hint in low for hint in hints):
            continue
        for pattern in plugin.denylist:
            for match in pattern.finditer(text):
                flagged = set(plugin.analyze_string(_line_at(text, match.start())))
                span = _value_span(match, flagged) if flagged else None
                if span:
                    spans.append((*span, plugin.secret_type))
    return sorted(spans)


def _detect_secrets(text: str, found: Found | None) -> str:
    """Whatever detect-secrets still flags → ``<SECRET>`` (never part of a placeholder)."""
    taken = [m.span() for m in _PLACEHOLDER.finditer(text)]
    pieces, last = [], 0
    for start, end, kind in _plugin_spans(text):
        if start < last or any(s < end and start < e for s, e in taken):
            continue
        if found is not None:
            found.append((f"detect-secrets:{kind}", text[start:end]))
        pieces += [text[last:start], "<SECRET>"]
        last = end
    return "".join([*pieces, text[last:]])


def _scrub_once(text: str, found: Found | None) -> str:
    """One pass of every rule, in order."""
    low = text.lower()
    for rule in _RULES:
        if any(hint in low for hint in rule[4]):
            text = _apply(rule, text, found)
    text = _assignment(_ASSIGNMENT, _assignment(_CLI_FLAG, text, found), found)
    if "@" in text:
        text = _emails(text, found)
    return _detect_secrets(text, found)


def _to_fixpoint(text: str | None, found: Found | None) -> str:
    """Passes until nothing changes (one, for almost every text), so the result is stable."""
    text = text or ""
    for _ in range(4):
        scrubbed = _scrub_once(text, found)
        if scrubbed == text:
            break
        text = scrubbed
    return text


def scrub(text: str | None) -> str:
    """``text`` with every secret and e-mail address replaced by a typed placeholder."""
    return _to_fixpoint(text, None)


def find_secrets(text: str | None) -> list[tuple[str, str]]:
    """``(kind, value)`` for everything :func:`scrub` would replace, in the order it does."""
    found: Found = []
    _to_fixpoint(text, found)
    return found


__all__ = ["find_secrets", "scrub"]
