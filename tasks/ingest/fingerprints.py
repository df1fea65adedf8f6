"""Which source files are unchanged since an earlier ingest, known without reading them.

A file's fingerprint is a keyed pseudonym (HMAC) of its path and listing stamp (size, modification
and change times, inode; on S3 size, ETag and LastModified), so no path, date or size can be read
from it. The cache maps fingerprints to the SHA-256 of the bytes read at that stamp. It lives beside
the Delta log in ``DATASET/_medflow/source-fingerprints.parquet`` (Delta ignores ``_`` folders), is
merged and rewritten after each ingest that publishes or confirms rows, and only ever saves work: a
file whose fingerprint is missing, or whose hash is not in the dataset, is read and hashed as usual.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core import storage
from tasks.data import dataset
from tasks.ingest import deid
from tasks.ingest.batch import BatchResult, KnownDigests, Unchanged
from tasks.ingest.labels import Item

_SCHEMA = pa.schema([("fingerprint", pa.string()), ("source_sha256", pa.string())])


def fingerprint(key: bytes, item: Item) -> str:
    return deid.pseudonym(key, "source-file", f"{item.path}\0{item.stamp}")


def cache_uri(dataset_uri: str) -> str:
    return dataset.fingerprint_cache_uri(dataset_uri)


def load(dataset_uri: str) -> dict[str, str]:
    """Fingerprint -> source SHA-256; empty when there is no cache or it cannot be read."""
    try:
        table = pq.read_table(io.BytesIO(storage.read_bytes(cache_uri(dataset_uri))))
        return dict(zip(table.column("fingerprint").to_pylist(), table.column("source_sha256").to_pylist(), strict=True))
    except (OSError, pa.ArrowException, KeyError):  # missing or damaged: a cache miss, never an error
        return {}


def save(dataset_uri: str, entries: dict[str, str]) -> None:
    """Publish the cache atomically (the last of two concurrent ingests wins; both are correct)."""
    table = pa.table({"fingerprint": list(entries), "source_sha256": list(entries.values())}, schema=_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    storage.write_bytes_atomic(cache_uri(dataset_uri), sink.getvalue().to_pybytes())


@dataclass
class KnownByFingerprint:
    """The items still to read, and a result marking the others unchanged."""

    to_read: list[Item]
    unchanged: BatchResult


def split_unchanged(items: list[Item], cache: dict[str, str], known: KnownDigests, key: bytes) -> KnownByFingerprint:
    """Items whose file's stamp matches a cached one whose hash is already in the dataset are
    unchanged (not read); the others are still to read."""
    to_read: list[Item] = []
    unchanged = BatchResult(table=None)
    for item in items:
        sha = cache.get(fingerprint(key, item)) if cache else None
        if sha is not None and sha in known:
            unchanged.unchanged.append(Unchanged(item.index, sha))
        else:
            to_read.append(item)
    return KnownByFingerprint(to_read, unchanged)


def updated(cache: dict[str, str], items: list[Item], results: Iterable[BatchResult], key: bytes) -> dict[str, str]:
    """The cache with every file this run hashed (or found unchanged) added."""
    sha_by_index: dict[int, str] = {}
    for result in results:
        sha_by_index.update((u.index, u.source_sha256) for u in result.unchanged)
        sha_by_index.update((idx, keys.source_sha256) for idx, keys in zip(result.index, result.keys, strict=True))
    merged = dict(cache)
    merged.update((fingerprint(key, item), sha_by_index[item.index]) for item in items if item.index in sha_by_index)
    return merged
