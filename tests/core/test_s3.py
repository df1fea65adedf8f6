"""Source and dataset on s3:// against moto's S3 server on 127.0.0.1 (started by a fixture)."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from flows.ingest import IngestParams, ingest_flow
from medflow.cli import main
from tasks.core import storage
from tasks.data import dataset
from tests.corpora import good_corpus


def upload(local_dir: str, uri: str) -> None:
    fs = storage.filesystem(uri)
    for rel, *_ in storage.list_files(local_dir):
        fs.put_file(os.path.join(local_dir, rel), storage.strip_protocol(f"{uri}/{rel}"))


@pytest.fixture
def buckets(s3_endpoint):
    fs = storage.filesystem("s3://")
    for bucket in ("medflow-source", "medflow-data"):
        if not fs.exists(bucket):
            fs.mkdir(bucket)
    return "s3://medflow-source/corpus", "s3://medflow-data/datasets/chest"


def test_round_trip_on_s3_equals_local(tmp_path, buckets, ray_local):
    source_uri, dataset_uri = buckets
    labels = good_corpus(str(tmp_path / "corpus"), n_patients=5, images_per_patient=2)
    upload(str(tmp_path / "corpus"), source_uri)
    remote = IngestParams(source=source_uri, labels=f"{source_uri}/labels.csv", dataset=dataset_uri,
                          rejects=str(tmp_path / "rejects.csv"), image_size=16)
    local = IngestParams(source=str(tmp_path / "corpus"), labels=labels, dataset=str(tmp_path / "local"),
                         rejects=str(tmp_path / "local-rejects.csv"), image_size=16)
    summary = ingest_flow(remote)
    ingest_flow(local)
    assert summary.added == 10 and summary.rejected == 0  # labels.csv itself is not "unlabeled"
    assert storage.exists(f"{dataset_uri}/_delta_log/00000000000000000000.json")
    columns = ["image_key", "patient_key", "split", "pixels"]
    key = lambda r: r["image_key"]  # noqa: E731
    assert sorted(dataset.read_version(dataset_uri, columns=columns).to_pylist(), key=key) == sorted(
        dataset.read_version(local.dataset, columns=columns).to_pylist(), key=key)
    again = ingest_flow(remote)
    assert again.added == 0 and again.unchanged == 10 and dataset.latest_version(dataset_uri) == 0
    assert again.unchanged_not_read == 10  # S3 listing stamps (ETag, LastModified) matched: nothing downloaded
    out = str(tmp_path / "export.parquet")
    assert main(["dataset", "export", dataset_uri, "--out", out]) == 0
    assert pq.read_table(out).num_rows == 10


def test_rejects_can_be_written_to_s3(tmp_path, buckets, ray_local):
    source_uri, _ = buckets
    labels = good_corpus(str(tmp_path / "c"), n_patients=1, images_per_patient=1)
    with open(labels, "a") as f:
        f.write("missing.dcm,normal\n")
    upload(str(tmp_path / "c"), source_uri + "2")
    params = IngestParams(source=source_uri + "2", labels=f"{source_uri}2/labels.csv",
                          dataset="s3://medflow-data/datasets/small", rejects="s3://medflow-data/rejects/run.csv")
    ingest_flow(params)
    assert "missing.dcm,missing_file" in storage.read_bytes(params.rejects).decode()
