"""HTML pages: the one Jinja2 environment every page and report is rendered with, and its CSP.

Every template of adaptune (the service's dashboard and login page, the evaluation report) is
rendered through :func:`environment`, whatever its file name:

- autoescape is on for every template (``select_autoescape()`` would match only names ending in
  ``.html`` and leave ``*.html.j2`` raw);
- every value a template prints first loses its control characters (NUL and the C0/C1 controls
  other than tab and newline) and then passes the dataset's secret scrubber, so a token pasted
  into a ticket title is shown as ``<GITHUB_TOKEN>`` on every page, as in the datasets;
- :func:`policy` turns the ``<style>`` and ``<script>`` blocks *of the template source* into a
  strict Content-Security-Policy with their SHA-256 hashes. Only the template's own blocks are
  hashed: the hashes are computed before any user text is rendered, so an injected inline
  script never matches one. A block that holds a Jinja expression is refused (its content would
  vary with data).
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from pathlib import Path

import jinja2
from markupsafe import Markup

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_IMAGE = re.compile(r"data:image/(?:png|jpeg|gif|webp);base64,[A-Za-z0-9+/]*={0,2}")
_BLOCK = re.compile(r"<(style|script)(?:\s[^>]*)?>(.*?)</\1\s*>", re.S | re.I)
BASE_POLICY = (
    "default-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "img-src 'self' data:",
)
"""What every page's Content-Security-Policy starts with: nothing loads unless listed."""


def clean_text(value: str) -> str:
    """``value`` without control characters and with secrets replaced by placeholders."""
    from adaptune.dataset.scrub import scrub

    return scrub(_CONTROL.sub("", value))


def _finalize(value: object) -> object:
    """Applied by Jinja2 to every printed value before it is escaped."""
    if isinstance(value, Markup):  # the page's own markup (``| safe``): controls only
        return Markup(_CONTROL.sub("", str(value)))
    if isinstance(value, str):
        if _IMAGE.fullmatch(value):  # an inline figure: base64 can carry neither markup nor text
            return value
        return clean_text(value)
    return value


def environment(folder: Path, strict: bool = False) -> jinja2.Environment:
    """A Jinja2 environment for the templates in ``folder``: autoescape on for every template,
    printed values cleaned (:func:`clean_text`); ``strict`` makes undefined names an error."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=True,
        finalize=_finalize,
        undefined=jinja2.StrictUndefined if strict else jinja2.Undefined,
        keep_trailing_newline=True,
    )


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


def block_hashes(html: str) -> dict[str, list[str]]:
    """CSP hash sources of the inline ``<style>`` and ``<script>`` blocks of ``html``."""
    found: dict[str, list[str]] = {"style": [], "script": []}
    for kind, content in _BLOCK.findall(html):
        found[kind.lower()].append(_hash(content))
    return found


def policy_for(html: str, extra: tuple[str, ...] = ()) -> str:
    """The strict policy for a page whose inline blocks are those of ``html`` (trusted HTML:
    a template's source or a page the server builds without user text)."""
    hashes = block_hashes(html)
    parts = list(BASE_POLICY)
    if hashes["style"]:
        parts.append("style-src " + " ".join(hashes["style"]))
    if hashes["script"]:
        parts.append("script-src " + " ".join(hashes["script"]))
    merged: dict[str, list[str]] = {}
    for part in [*parts, *extra]:
        name, _, sources = part.partition(" ")
        merged.setdefault(name, []).extend(s for s in sources.split() if s)
    return "; ".join(" ".join([name, *dict.fromkeys(src)]) for name, src in merged.items())


@cache
def _template_policy(folder: str, name: str) -> str:
    source = (Path(folder) / name).read_text(encoding="utf-8")
    for _kind, content in _BLOCK.findall(source):
        if "{{" in content or "{%" in content:
            raise ValueError(f"{name}: an inline style or script block holds a Jinja expression")
    return policy_for(source)


def policy(folder: Path, name: str) -> str:
    """The Content-Security-Policy of template ``name`` in ``folder`` (cached)."""
    return _template_policy(str(folder), name)
