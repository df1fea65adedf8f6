"""Publish kept rows as one dataset version, and the refusals as a CSV outside the dataset."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pyarrow as pa
import ray

from tasks import dataset, storage
from tasks.parallel import Decoded
from tasks.reconcile import Outcome

REJECTS_HEADER = ("path", "reason", "detail")


def kept_batches(decoded: Decoded, keep: dict[int, str]) -> Iterator[pa.RecordBatch]:
    """Kept rows with their split. Tables come from Ray's object store without copying (Arrow
    buffers map the shared memory), so the driver's own memory does not grow with the corpus."""
    for result, table_ref in zip(decoded.results, decoded.tables, strict=True):
        wanted = [(row, keep[idx]) for row, idx in enumerate(result.index) if idx in keep]
        if not wanted:
            continue
        table: pa.Table = ray.get(table_ref)
        if len(wanted) < table.num_rows:
            table = table.take([row for row, _ in wanted])
        table = table.append_column("split", pa.array([s for _, s in wanted], pa.string()))
        yield from table.select(dataset.SCHEMA.names).to_batches()


def publish_version(uri: str, decoded: Decoded, outcome: Outcome, summary: dict) -> int | None:
    """One new version with every kept row, or None (and no commit) when nothing is new."""
    if not outcome.keep:
        return None
    table = pa.Table.from_batches(list(kept_batches(decoded, outcome.keep)), dataset.SCHEMA)
    return dataset.append_version(uri, table, summary)


def write_rejects(uri: str, rows: list[tuple[str, str, str]]) -> None:
    """``path,reason,detail`` rows, sorted by path; may hold source paths, so never inside the dataset."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(REJECTS_HEADER)
    writer.writerows(sorted(rows))
    storage.write_bytes_atomic(uri, buffer.getvalue().encode())
