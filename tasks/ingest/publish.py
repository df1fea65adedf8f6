"""Publish kept rows as one dataset version, and the refusals as a CSV outside the dataset."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pyarrow as pa
import ray

from tasks.core import storage
from tasks.core.cluster import get_all
from tasks.core.refusals import RefusedPath
from tasks.data import dataset
from tasks.data.schema import Geometry, schema_for
from tasks.ingest.decode import Decoded
from tasks.ingest.labels import Plan
from tasks.ingest.reconcile import Outcome

REJECTS_HEADER = ("path", "reason", "detail")


@ray.remote(num_cpus=1, max_retries=2)
def _write_part_task(uri: str, table: pa.Table, rows: list[int], splits: list[str]) -> dict:
    if len(rows) < table.num_rows:
        table = table.take(rows)
    return dataset.write_part(uri, table.append_column("split", pa.array(splits, pa.string())))


def _kept(decoded: Decoded, keep: dict[int, str]) -> Iterator[tuple[ray.ObjectRef, list[int], list[str]]]:
    """(table reference, its kept rows, their splits) of each batch with a kept row."""
    for result, table_ref in zip(decoded.results, decoded.tables, strict=True):
        wanted = [(row, keep[idx]) for row, idx in enumerate(result.index) if idx in keep]
        if wanted:
            yield table_ref, [r for r, _ in wanted], [s for _, s in wanted]


def write_parts(uri: str, decoded: Decoded, keep: dict[int, str]) -> list[dict]:
    """Each batch's kept rows, with their split, written as one data file by a Ray worker (in parallel;
    the pixels go from the object store to storage without passing through the driver)."""
    return get_all([_write_part_task.remote(uri, table_ref, rows, splits) for table_ref, rows, splits in _kept(decoded, keep)])


def kept_rows(decoded: Decoded, keep: dict[int, str], geometry: Geometry) -> pa.RecordBatchReader:
    """Every kept row with its split, streamed batch by batch from Ray's object store."""
    schema = schema_for(geometry.kind)

    def batches():
        for table_ref, rows, splits in _kept(decoded, keep):
            table = ray.get(table_ref).take(rows).append_column("split", pa.array(splits, pa.string()))
            yield from table.select(schema.names).cast(schema).to_batches()

    return pa.RecordBatchReader.from_batches(schema, batches())


def publish_version(uri: str, decoded: Decoded, outcome: Outcome, summary: dict, base_version: int | None,
                    geometry: Geometry) -> int | None:
    """One new version (``base_version`` + 1) with every kept row, or None (and no commit) when nothing is new.
    When series changed (``outcome.replaced``) their rows are replaced in the same commit (a MERGE)."""
    if not outcome.keep:
        return None
    if outcome.replaced and base_version is not None:
        return dataset.replace_rows(uri, kept_rows(decoded, outcome.keep, geometry), summary, base_version)
    return dataset.commit_parts(uri, write_parts(uri, decoded, outcome.keep), summary, base_version, geometry)


def refused_paths(work: Plan, outcome: Outcome) -> list[RefusedPath]:
    """Every refused input of a run by its source path: refused when planned, decoded or reconciled."""
    paths = {item.index: item.path for item in work.items}
    return work.rejects + [RefusedPath(paths[r.index], r.reason, r.detail) for r in outcome.rejects]


def write_rejects(uri: str, rejects: list[RefusedPath]) -> None:
    """``path,reason,detail`` rows, sorted by path; may hold source paths, so never inside the dataset."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(REJECTS_HEADER)
    writer.writerows(sorted((r.path, str(r.reason), r.detail) for r in rejects))
    storage.write_bytes_atomic(uri, buffer.getvalue().encode())
