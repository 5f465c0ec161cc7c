"""Reading issue objects from files: JSONL, JSONL.gz, or one JSON array (gzip or not).

Bad lines (malformed JSON, invalid UTF-8, a missing field, a number no column holds, ``NaN``)
are rejected with ``FILE:LINE`` and a reason, the good rows are stored; ``strict`` rejects the
whole file when any line is bad.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from adaptune.errors import IngestError, InputRejected
from adaptune.ingest.base import Progress, mark_synced, write_batch
from adaptune.ingest.normalize import RowError, check_numbers, github_issue, load_json
from adaptune.store import Store
from adaptune.types import Comment, IngestReport, Issue, Rejection

BATCH = 1000

Converter = Callable[[Any], tuple[Issue, list[Comment]]]


def _open(path: Path) -> BinaryIO:
    if not path.is_file():
        raise IngestError(f"{path}: no such file.")
    with path.open("rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")  # type: ignore[return-value]


def iter_objects(path: Path) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, object)`` per row; a row that cannot be read yields a :class:`Rejection`."""
    with _open(path) as fh:
        try:
            first = fh.peek(64)[:64] if hasattr(fh, "peek") else b""
            if first.lstrip()[:1] == b"[":
                yield from _iter_array(path, fh)
            else:
                yield from _iter_lines(path, fh)
        except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
            yield str(path), Rejection(str(path), f"file is truncated or corrupt ({exc})")


def _iter_lines(path: Path, fh: BinaryIO) -> Iterator[tuple[str, Any]]:
    for lineno, raw in enumerate(fh, start=1):
        where = f"{path}:{lineno}"
        if raw.strip():
            yield where, _read_line(where, raw)


def _read_line(where: str, raw: bytes) -> Any:
    """One JSON line's value, or the :class:`Rejection` that says why it cannot be read."""
    try:
        obj, odd = load_json(raw.decode("utf-8"))
        if odd:
            check_numbers(obj)
    except RowError as exc:
        return Rejection(where, str(exc))
    except UnicodeDecodeError as exc:
        return Rejection(where, f"invalid UTF-8 at byte {exc.start}")
    except json.JSONDecodeError as exc:
        return Rejection(where, f"malformed JSON ({exc.msg} at column {exc.colno})")
    except RecursionError:
        return Rejection(where, "JSON nested too deeply to be an issue")
    return obj


def _iter_array(path: Path, fh: BinaryIO) -> Iterator[tuple[str, Any]]:
    data = fh.read()
    try:
        items, odd = load_json(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: invalid UTF-8 at byte {exc.start}; nothing stored.") from None
    except json.JSONDecodeError as exc:
        raise IngestError(
            f"{path}: malformed JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); "
            "nothing stored."
        ) from None
    except RecursionError:
        raise IngestError(f"{path}: JSON nested too deeply; nothing stored.") from None
    if not isinstance(items, list):
        raise IngestError(f"{path}: expected a JSON array or JSON lines, got an object.")
    for index, item in enumerate(items):
        where = f"{path}[{index}]"
        try:
            if odd:
                check_numbers(item)
        except RowError as exc:
            item = Rejection(where, str(exc))
        yield where, item


@dataclass
class ObjectFileSource:
    """Any file of issue objects, converted by ``convert`` (one object → issue + comments)."""

    path: Path
    convert: Converter
    label: str
    strict: bool = False
    progress: Progress | None = None

    def ingest(self, store: Store, domain: str | None = None) -> IngestReport:
        """Read the file and upsert its rows in batches (all or nothing when ``strict``)."""
        report = IngestReport(source=f"{self.label}:{self.path}")
        issues: list[Issue] = []
        comments: list[Comment] = []
        for where, obj in iter_objects(self.path):
            report.seen += 1
            if isinstance(obj, Rejection):
                report.rejected.append(obj)
                continue
            try:
                issue, its_comments = self.convert(obj)
            except RowError as exc:
                report.rejected.append(Rejection(where, str(exc)))
                continue
            issues.append(issue)
            comments.extend(its_comments)
            if not self.strict and len(issues) >= BATCH:
                self._flush(store, report, issues, comments, domain)
        if self.strict and report.rejected:
            first = report.rejected[0]
            raise InputRejected(
                f"{len(report.rejected)} bad row(s), nothing stored (--strict); first: "
                f"{first.where}: {first.reason}",
                rejected=len(report.rejected),
            )
        self._flush(store, report, issues, comments, domain)
        mark_synced(store, report.repos)
        return report

    def _flush(
        self,
        store: Store,
        report: IngestReport,
        issues: list[Issue],
        comments: list[Comment],
        domain: str | None,
    ) -> None:
        if issues or comments:
            write_batch(store, report, issues, comments, domain)
            if self.progress:
                self.progress(f"{self.path.name}: {report.seen} rows read")
        issues.clear()
        comments.clear()


def _rest_object(obj: Any) -> tuple[Issue, list[Comment]]:
    return github_issue(obj), []


def file_source(
    path: str | Path, strict: bool = False, progress: Progress | None = None
) -> ObjectFileSource:
    """A file of GitHub REST issue objects (JSONL, JSONL.gz or a JSON array)."""
    return ObjectFileSource(Path(path), _rest_object, "file", strict, progress)
