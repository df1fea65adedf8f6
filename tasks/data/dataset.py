"""The dataset: a Delta Lake table of one row per image on a local folder or ``s3://``.

Each ingest that adds images is one Delta commit, so each version is published atomically and
readers never see half of one. Only the columns in ``SCHEMA`` exist; all are PHI-free.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Schema
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction, create_table_with_add_actions

from tasks.core import storage
from tasks.data.schema import SCHEMA, Geometry, geometry_of, schema_for, table_schema
from tasks.data.splits import audit

INDEX_COLUMNS = ["image_key", "patient_key", "label", "split", "source_sha256", "pixels_sha256"]
METADATA_KEY = "medflow"
SIDECAR = "_medflow"  # medflow's files inside the table folder (Delta ignores folders starting with "_")


class DatasetNotFoundError(FileNotFoundError):
    """No dataset (Delta table) at this URI."""


class ConcurrentPublishError(RuntimeError):
    """Another ingest published a version after this one read the dataset; nothing was committed.
    A rerun adds whatever is still new."""


VERSION_KEY = b"medflow.version"


def index_version(index: pa.Table) -> int | None:
    """The version an index from ``read_index`` was read at (None: no dataset yet)."""
    value = (index.schema.metadata or {}).get(VERSION_KEY)
    return int(value) if value is not None else None


def _uri(uri: str) -> str:
    return storage.normalize(uri)


def fingerprint_cache_uri(uri: str) -> str:
    """The ingest's fingerprint cache, in a folder beside the Delta log that Delta ignores."""
    return storage.join(_uri(uri), SIDECAR, "source-fingerprints.parquet")


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


class GeometryMismatchError(ValueError):
    """An ingest asked for images of another geometry than the dataset's."""


def geometry(uri: str, version: int | None = None) -> Geometry:
    """The dataset's image contract, from the table's schema. A dataset made before the contract was
    recorded gets it from its first row (ingest then kept one size per dataset, by convention)."""
    return table_geometry(open_table(uri, version), uri)


def table_geometry(table: DeltaTable, uri: str) -> Geometry:
    """``geometry`` of a table already open (``uri`` names it in errors)."""
    recorded = geometry_of(table.schema().to_arrow())
    if recorded is not None:
        return recorded
    first = next(iter(table.to_pyarrow_dataset().to_batches(columns=["height"], batch_size=1)), None)
    if first is None or not first.num_rows:
        raise DatasetNotFoundError(f"dataset {uri} has no rows and no recorded geometry")
    return Geometry(image_size=int(first.column("height")[0].as_py()))


def existing_geometry(uri: str) -> Geometry | None:
    """The geometry of the dataset at ``uri``, or None when there is no dataset yet."""
    try:
        return geometry(uri)
    except DatasetNotFoundError:
        return None


def check_geometry(uri: str, requested: Geometry, existing: Geometry | None = None) -> None:
    """Refuse, before anything is decoded, an ingest whose images would not match the dataset's
    (``existing``: the dataset's geometry when the caller has read it already)."""
    existing = existing or existing_geometry(uri)
    if existing is not None and existing.kind != requested.kind:
        flag = "--volumes" if requested.volumes else "--images"
        raise GeometryMismatchError(
            f"dataset {uri} holds {existing.describe()}; {flag} would mix images and volumes in one dataset "
            f"(omit {flag}, or use a new --dataset)")
    if existing is not None and existing.window != requested.window:
        def shown(window):
            return "each series' own window" if window is None else f"--window {window[0]:g},{window[1]:g}"
        raise GeometryMismatchError(
            f"dataset {uri} was made with {shown(existing.window)}; {shown(requested.window)} would mix windows in one "
            "dataset (omit --window, or use a new --dataset)")
    if existing is not None and existing != requested:
        raise GeometryMismatchError(
            f"dataset {uri} stores {existing.describe()}; --image-size {requested.image_size} "
            "would mix sizes in one dataset (omit --image-size, or use a new --dataset)")


def read_index(uri: str) -> pa.Table:
    """Small columns of the latest version (no pixels): what incremental ingest compares against."""
    try:
        table = open_table(uri)
    except DatasetNotFoundError:
        return SCHEMA.empty_table().select(INDEX_COLUMNS)
    index = table.to_pyarrow_dataset().to_table(columns=INDEX_COLUMNS)
    return index.replace_schema_metadata({VERSION_KEY: str(table.version())})


def write_part(uri: str, rows: pa.Table) -> dict:
    """Write one Parquet data file into the table folder (not yet part of any version).

    Returns the facts of its Delta add action. Runs on Ray workers, in parallel; a file whose
    commit never happens stays invisible to readers.
    """
    name = f"part-{uuid.uuid4().hex}.parquet"
    schema = schema_for("volume3d" if "depth" in rows.column_names else "image2d")
    columns = [c for c in schema.names if c not in ("pixels", "spacing", "resampled_spacing")]  # no stats for blobs, lists
    sink = pa.BufferOutputStream()
    pq.write_table(rows.select(schema.names).cast(schema), sink, compression="lz4",
                   use_dictionary=columns, write_statistics=columns)
    data = sink.getvalue().to_pybytes()
    storage.write_bytes_atomic(storage.join(_uri(uri), name), data)
    return {"path": name, "size": len(data), "rows": rows.num_rows, "mtime_ms": int(time.time() * 1000)}


def commit_parts(uri: str, parts: list[dict], summary: dict, base_version: int | None, geometry: Geometry) -> int:
    """Make written parts one new version, in one atomic commit; return its number.

    ``base_version`` is the version the caller's decisions were based on (None: no table yet). The
    commit is made only as version ``base_version + 1`` (Delta's put-if-absent on the log entry, no
    automatic rebase): if another ingest committed first, ``ConcurrentPublishError`` is raised and the
    dataset is unchanged, so two concurrent ingests can never both add the same files. ``geometry`` is
    recorded in the schema when the table is created and checked against it otherwise."""
    actions = [
        AddAction(path=p["path"], size=p["size"], partition_values={}, modification_time=p["mtime_ms"],
                  data_change=True, stats=json.dumps({"numRecords": p["rows"]}))
        for p in parts
    ]
    properties = CommitProperties(custom_metadata={METADATA_KEY: json.dumps(summary)}, max_commit_retries=0)
    if base_version is None:
        try:
            create_table_with_add_actions(_uri(uri), Schema.from_arrow(table_schema(geometry)), actions, mode="error",
                                          storage_options=storage.delta_storage_options(), commit_properties=properties)
        except Exception as exc:  # the table appeared since it was read
            if latest_version(uri) is not None:
                raise ConcurrentPublishError(f"another ingest created {uri} meanwhile; rerun to add what is still new") from exc
            raise
        return 0
    table = open_table(uri, base_version)
    check_geometry(uri, geometry, table_geometry(table, uri))
    try:
        table.create_write_transaction(actions, mode="append", schema=table.schema(),
                                       commit_properties=properties)
    except CommitFailedError as exc:
        raise ConcurrentPublishError(f"another ingest published {uri} version {base_version + 1} meanwhile; "
                                     "rerun to add what is still new") from exc
    return base_version + 1


def replace_rows(uri: str, rows: pa.RecordBatchReader, summary: dict, base_version: int) -> int:
    """One new version in one atomic MERGE on ``image_key``: rows whose key is in the dataset replace
    that row, the others are added. Made only as version ``base_version + 1``, as ``commit_parts``."""
    table = open_table(uri, base_version)
    properties = CommitProperties(custom_metadata={METADATA_KEY: json.dumps(summary)}, max_commit_retries=0)
    try:
        (table.merge(rows, predicate="target.image_key = source.image_key", source_alias="source", target_alias="target",
                     commit_properties=properties)
         .when_matched_update_all().when_not_matched_insert_all().execute())
    except CommitFailedError as exc:
        raise ConcurrentPublishError(f"another ingest published {uri} version {base_version + 1} meanwhile; "
                                     "rerun to add what is still new") from exc
    return table.version()


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
    schema = schema_for(table_geometry(table, uri).kind)
    sink = pa.BufferOutputStream()
    rows = 0
    with pq.ParquetWriter(sink, schema) as writer:
        for batch in dataset.to_batches(batch_size=1024):
            writer.write_batch(batch.select(schema.names).cast(schema))
            rows += batch.num_rows
    storage.write_bytes_atomic(out, sink.getvalue().to_pybytes())
    return rows
