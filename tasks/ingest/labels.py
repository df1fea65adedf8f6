"""The labels CSV and the source listing -> the work list, with every refusal decided up front.

Paths are checked lexically and (locally) through symlinks before any file is opened.
"""

from __future__ import annotations

import csv
import hashlib
import io
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from tasks.core import storage
from tasks.core.refusals import Reason, RefusedPath
from tasks.dicom.source import PathGuard

SPLITS = ("train", "val", "test")


class LabelsError(ValueError):
    """The labels CSV as a whole is unusable (missing columns, unreadable)."""


@dataclass(frozen=True)
class Item:
    """One labelled input to decode: ``index`` keys it in the run, ``path`` is relative to the source."""

    index: int
    path: str
    label: str
    split: str | None  # from the CSV, None when medflow assigns it
    size: int
    stamp: str = ""  # from the listing: changes whenever the file may have (see storage.Listed)
    files: tuple[tuple[str, int], ...] = ()  # a series: its files (path below the source, size), sorted


@dataclass
class Plan:
    items: list[Item] = field(default_factory=list)
    rejects: list[RefusedPath] = field(default_factory=list)


def read_labels(labels_uri: str) -> list[dict[str, str]]:
    """Rows of the labels CSV; requires ``path`` and ``label`` columns."""
    try:
        text = storage.read_bytes(labels_uri).decode("utf-8-sig")
    except FileNotFoundError:
        raise LabelsError(f"labels CSV not found: {labels_uri}") from None
    except UnicodeDecodeError:
        raise LabelsError("labels CSV is not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = {c.strip().lower() for c in reader.fieldnames or []}
    missing = {"path", "label"} - columns
    if missing:
        raise LabelsError(f"labels CSV lacks column(s) {sorted(missing)}; found {sorted(columns)}")
    return [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]


def plan(source: str, labels_uri: str, volumes: bool = False) -> Plan:
    """Match CSV rows to source files (``volumes``: to series folders or multi-frame files); every file
    and row gets exactly one outcome."""
    rows = read_labels(labels_uri)
    listing = {entry.path: entry for entry in storage.list_files(source)}
    result = Plan()
    mentioned = {_relative_to(source, labels_uri) or ""}  # the CSV itself, and every path it names, refused or not
    checked = _checked_rows(rows, PathGuard(source), result, mentioned)
    if volumes:
        _plan_series(checked, listing, result, mentioned)
    else:
        for rel, label, split in checked:
            if rel not in listing:
                result.rejects.append(RefusedPath(rel, Reason.MISSING_FILE, "no such file in the source"))
                continue
            result.items.append(Item(len(result.items), rel, label, split, listing[rel].size, listing[rel].stamp))
        for rel in sorted(set(listing) - mentioned):
            result.rejects.append(RefusedPath(rel, Reason.UNLABELED, "no row in the labels CSV"))
    _drop_conflicting(result)
    return result


def _checked_rows(rows: list[dict[str, str]], guard: PathGuard, result: Plan,
                  mentioned: set[str]) -> Iterator[tuple[str, str, str | None]]:
    """(path, label, split) of each CSV path that may be opened, once, with a valid label and split;
    the other rows become refusals in ``result``; every path named is added to ``mentioned``."""
    seen: dict[str, tuple[str, str | None]] = {}
    conflicted: set[str] = set()
    for row in rows:
        rel = row.get("path", "")
        label, split = row.get("label", ""), (row.get("split") or "").lower() or None
        why = guard.reason(rel)
        if why:
            if rel not in mentioned:
                result.rejects.append(RefusedPath(rel, Reason.PATH_OUTSIDE_SOURCE, why))
            mentioned.add(rel)
            continue
        rel = posixpath.normpath(rel.replace("\\", "/"))
        mentioned.add(rel)
        if rel in seen:
            if seen[rel] != (label, split) and rel not in conflicted:
                conflicted.add(rel)
                result.rejects.append(RefusedPath(rel, Reason.CONFLICTING_LABELS, "listed again with another label or split"))
            continue
        seen[rel] = (label, split)
        if not label or (split is not None and split not in SPLITS):
            result.rejects.append(RefusedPath(rel, Reason.INVALID_LABEL_ROW, f"label must be non-empty, split one of {SPLITS}"))
            continue
        yield rel, label, split


def _folders(listing: dict) -> dict[str, list]:
    """Each folder's files directly inside it."""
    folders: dict[str, list] = {}
    for path, entry in listing.items():
        folders.setdefault(posixpath.dirname(path), []).append(entry)
    return folders


def _series_item(index: int, rel: str, label: str, split: str | None, entries: list) -> Item:
    entries = sorted(entries, key=lambda e: e.path)
    stamp = hashlib.sha256("\n".join(f"{e.path}\0{e.stamp}" for e in entries).encode()).hexdigest()
    return Item(index, rel, label, split, sum(e.size for e in entries), stamp, tuple((e.path, e.size) for e in entries))


def _plan_series(checked: Iterator[tuple[str, str, str | None]], listing: dict, result: Plan, mentioned: set[str]) -> None:
    """Volume mode: each CSV path names a series folder (its files directly inside it) or one
    multi-frame file; files that no named series holds are reported once per folder (unlabeled)."""
    folders = _folders(listing)
    for rel, label, split in checked:
        entries = [listing[rel]] if rel in listing else folders.get(rel, [])
        if entries:
            result.items.append(_series_item(len(result.items), rel, label, split, entries))
        else:
            result.rejects.append(RefusedPath(rel, Reason.MISSING_FILE, "no such series folder or file in the source"))
    covered = {p for p in listing if p in mentioned or posixpath.dirname(p) in mentioned}
    for folder in sorted({posixpath.dirname(p) for p in set(listing) - covered}):
        n = sum(1 for e in folders[folder] if e.path not in covered)
        result.rejects.append(RefusedPath(folder or ".", Reason.UNLABELED, f"{n} file(s) that no labels row names"))


def _drop_conflicting(result: Plan) -> None:
    """A path listed twice with different labels is refused entirely, not decoded once."""
    conflicting = {r.path for r in result.rejects if r.reason == Reason.CONFLICTING_LABELS}
    if conflicting:
        kept = [item for item in result.items if item.path not in conflicting]
        result.items = [replace(item, index=i) for i, item in enumerate(kept)]


def _relative_to(source: str, uri: str) -> str | None:
    """The labels CSV's own path inside the source, so it is not reported as unlabeled."""
    src, target = storage.normalize(source), storage.normalize(uri)
    if target.startswith(src + "/"):
        return target[len(src) + 1 :]
    return None
