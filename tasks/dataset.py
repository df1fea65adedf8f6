"""The dataset: a Delta Lake table of one row per image on a local folder or ``s3://``.

Each ingest that adds images is one Delta commit, so each version is published atomically and
readers never see half of one. Only the columns in ``SCHEMA`` exist; all are PHI-free.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import ColumnProperties, CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import TableNotFoundError

from tasks import storage
from tasks.ingest import STAGED_SCHEMA
from tasks.splits import audit

SCHEMA = pa.schema(list(STAGED_SCHEMA) + [pa.field("split", pa.string())])
INDEX_COLUMNS = ["image_key", "patient_key", "label", "split", "source_sha256", "pixels_sha256"]
METADATA_KEY = "medflow"
# Pixels: LZ4 (fast, ~20% smaller than raw) and no min/max statistics (useless for blobs, and slow).
WRITER = WriterProperties(
    compression="LZ4_RAW",
    column_properties={"pixels": ColumnProperties(statistics_enabled="NONE", dictionary_enabled=False)},
)


class DatasetNotFoundError(FileNotFoundError):
    """No dataset (Delta table) at this URI."""


def _uri(uri: str) -> str:
    return storage.normalize(uri)


def open_table(uri: str, version: int | None = None) -> DeltaTable:
    try:
        return DeltaTable(_uri(uri), version=version, storage_options=storage.delta_storage_options())
    except TableNotFoundError:
        raise DatasetNotFoundError(f"no medflow dataset at {uri}") from None


def latest_version(uri: str) -> int | None:
    """The newest version number, or None when the dataset does not exist yet."""
    try:
        return open_table(uri).version()
    except DatasetNotFoundError:
        return None


def read_index(uri: str) -> pa.Table:
    """Small columns of the latest version (no pixels): what incremental ingest compares against."""
    try:
        table = open_table(uri)
    except DatasetNotFoundError:
        return SCHEMA.empty_table().select(INDEX_COLUMNS)
    return table.to_pyarrow_dataset().to_table(columns=INDEX_COLUMNS)


def append_version(uri: str, rows: pa.Table | Iterator[pa.RecordBatch], summary: dict) -> int:
    """Write ``rows`` as one new version (one atomic commit); return its number."""
    if not isinstance(rows, pa.Table):
        rows = pa.RecordBatchReader.from_batches(SCHEMA, rows)
    write_deltalake(
        _uri(uri),
        rows,
        mode="append",
        storage_options=storage.delta_storage_options(),
        writer_properties=WRITER,
        commit_properties=CommitProperties(custom_metadata={METADATA_KEY: json.dumps(summary)}),
    )
    return open_table(uri).version()


def read_version(uri: str, version: int | None = None, columns: list[str] | None = None) -> pa.Table:
    """One version as an Arrow table (all columns by default)."""
    return open_table(uri, version).to_pyarrow_dataset().to_table(columns=columns)


def iter_batches(uri: str, version: int | None = None, columns: list[str] | None = None,
                 batch_size: int = 1024) -> Iterator[pa.RecordBatch]:
    """Stream one version in record batches, without loading it whole."""
    yield from open_table(uri, version).to_pyarrow_dataset().to_batches(columns=columns, batch_size=batch_size)


def history(uri: str) -> list[dict]:
    """Versions, oldest first, with the ingest summary stored in each commit."""
    entries = []
    for entry in sorted(open_table(uri).history(), key=lambda e: e.get("version", 0)):
        summary = entry.get(METADATA_KEY)
        entries.append(
            {
                "version": entry.get("version"),
                "timestamp_ms": entry.get("timestamp"),
                "operation": entry.get("operation"),
                "summary": json.loads(summary) if isinstance(summary, str) else None,
            }
        )
    return entries


def describe(uri: str, version: int | None = None) -> dict:
    """Versions, rows per split and label, patients per split, and the leakage audit."""
    index = read_version(uri, version, columns=["patient_key", "label", "split"]).to_pylist()
    rows: dict[str, Counter] = defaultdict(Counter)
    for row in index:
        rows[row["split"]][row["label"]] += 1
    table = open_table(uri, version)
    return {
        "uri": uri,
        "version": table.version(),
        "versions": history(uri),
        "rows": len(index),
        "rows_per_split_and_label": {s: dict(sorted(c.items())) for s, c in sorted(rows.items())},
        "audit": audit((r["patient_key"], r["split"]) for r in index),
    }


def export(uri: str, out: str, version: int | None = None) -> int:
    """Write one version as a single Parquet file at ``out`` (published atomically); return rows."""
    table = open_table(uri, version)
    dataset = table.to_pyarrow_dataset()
    sink = pa.BufferOutputStream()
    rows = 0
    with pq.ParquetWriter(sink, SCHEMA) as writer:
        for batch in dataset.to_batches(batch_size=1024):
            writer.write_batch(batch.select(SCHEMA.names))
            rows += batch.num_rows
    storage.write_bytes_atomic(out, sink.getvalue().to_pybytes())
    return rows
