"""Typer options made from a config's fields, so that a setting is declared once, in its config.

A command lists the settings it offers (:class:`Opt`) and :func:`config_options` gives it one
option per setting: the field's name in kebab-case (or a flag of its own), the field's default
and type, and the first paragraph of the field's docstring as the help. The command receives
their values in one dict keyed by field name, ready for the config's constructor.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import re
import textwrap
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, fields
from functools import cache
from typing import Any, Literal, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])
FIELD_DEFAULT: Any = object()
"""An :class:`Opt`'s default when it takes the field's."""


@dataclass(frozen=True, slots=True)
class Opt:
    """One setting of a config, offered as a command-line option."""

    name: str
    """The config's field."""
    flag: str | None = None
    """The option's flag; ``None``: ``--`` and the field's name in kebab-case."""
    default: Any = FIELD_DEFAULT
    """The option's default where the command's differs from the field's."""
    help: str | None = None
    """The help where the option means more than the field (``None``: the field's docstring)."""


def config_options(
    config: type, specs: Sequence[Opt | str], into: str = "settings"
) -> Callable[[F], F]:
    """Give a command the options ``specs`` lists, made from the dataclass ``config``'s fields.

    A string in ``specs`` names one of the command's own parameters and puts its option there
    (the help lists options in this order); the command's other parameters follow. The values
    of the made options reach the command as one dict, its parameter ``into``.
    """
    hints = typing.get_type_hints(config)
    defaults = {f.name: f.default for f in fields(config)}
    docs = field_docs(config)
    made = {
        s.name: _parameter(s, hints[s.name], defaults[s.name], docs.get(s.name, ""))
        for s in specs
        if isinstance(s, Opt)
    }

    def decorate(command: F) -> F:
        own = dict(inspect.signature(command, eval_str=True).parameters)
        if into not in own or set(own) & set(made):
            raise TypeError(f"{command.__name__} needs a parameter {into!r}, none named as a field")
        own.pop(into)
        order = [made[s.name] if isinstance(s, Opt) else own.pop(s) for s in specs]
        order += own.values()
        order = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in order]

        def run(**kwargs: Any) -> Any:
            settings = {name: kwargs.pop(name) for name in made}
            return command(**kwargs, **{into: settings})

        run.__signature__ = inspect.Signature(order)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in order}
        for name in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(run, name, getattr(command, name))
        return typing.cast(F, run)

    return decorate


def _parameter(spec: Opt, hint: Any, default: Any, doc: str) -> inspect.Parameter:
    """The typer option of one setting, as a parameter of the command's signature."""
    value = default if spec.default is FIELD_DEFAULT else spec.default
    if value is MISSING:
        raise TypeError(f"{spec.name} has no default to offer as an option")
    hint = _plain(hint)
    if value is None:
        hint = hint | None
    flag = spec.flag or "--" + spec.name.replace("_", "-")
    option = typer.Option(value, flag, help=spec.help or help_text(doc))
    return inspect.Parameter(
        spec.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=hint
    )


def _plain(hint: Any) -> Any:
    """A ``Literal`` of strings as ``str``: the config checks the value and says what it takes,
    as it does for every caller (typer would reject it with a usage error of its own)."""
    if typing.get_origin(hint) is Literal:
        return type(typing.get_args(hint)[0])
    return hint


@cache
def field_docs(config: type) -> dict[str, str]:
    """Each field's docstring: the string right below the field in the class body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(config)))
    body = typing.cast(ast.ClassDef, tree.body[0]).body
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def help_text(doc: str) -> str:
    """A docstring's first paragraph on one line, its reST markup dropped."""
    first = " ".join(doc.split("\n\n")[0].split())
    first = re.sub(r":\w+:`~?([^`]*)`", r"\1", first)
    return first.replace("``", "")
