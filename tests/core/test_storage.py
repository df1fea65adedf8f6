"""Local object storage: atomic writes, exclusive creates, listings, bounded reads, JSON records."""

from __future__ import annotations

import os

from tasks.core import storage


def test_atomic_write_exclusive_create_and_listing(tmp_path):
    root = storage.normalize(str(tmp_path / "store"))
    storage.write_bytes_atomic(storage.join(root, "a", "one.bin"), b"12345")
    storage.write_bytes_atomic(storage.join(root, "two.bin"), b"xy")
    assert not [n for n in os.listdir(tmp_path / "store" / "a") if n != "one.bin"]  # no temporary file left behind
    assert storage.create_exclusive(storage.join(root, "claim"), b"first")
    assert not storage.create_exclusive(storage.join(root, "claim"), b"second")
    assert storage.read_bytes(storage.join(root, "claim")) == b"first"
    listed = {entry.path: entry.size for entry in storage.list_files(root)}
    assert listed == {"a/one.bin": 5, "two.bin": 2, "claim": 5}
    assert storage.read_bytes(storage.join(root, "a", "one.bin"), limit=3) == b"123"
    assert storage.file_size(storage.join(root, "two.bin")) == 2 and storage.file_size(root) is None


def test_json_records_round_trip_and_uris_normalise(tmp_path):
    uri = storage.join(str(tmp_path), "r.json")
    storage.write_json(uri, {"a": [1, 2], "b": None})
    assert storage.read_json(uri) == {"a": [1, 2], "b": None}
    assert storage.normalize("relative/x/") == os.path.abspath("relative/x")
    assert storage.normalize("s3://bucket/prefix/") == "s3://bucket/prefix"
    assert storage.join("s3://bucket", "a", "b.json") == "s3://bucket/a/b.json" and storage.is_remote("s3://bucket")
