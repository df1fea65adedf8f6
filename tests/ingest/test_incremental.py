"""Incremental, idempotent ingest: unchanged reruns add nothing, new files only are decoded,
a crash mid-publish followed by a rerun equals one clean run, patients keep their split."""

from __future__ import annotations

import os
import shutil

import pydicom
import pytest

import tasks.data.dataset
from flows.ingest import IngestParams, ingest_flow
from tasks.data import dataset
from tasks.ingest import fingerprints
from tests.conftest import run_together
from tests.corpora import good_corpus, read_csv


def params_for(tmp_path, source, labels, name="dataset") -> IngestParams:
    return IngestParams(source=str(source), labels=labels, dataset=str(tmp_path / name),
                        rejects=str(tmp_path / f"{name}-rejects.csv"), image_size=16)


def rows(uri: str) -> list[tuple]:
    table = dataset.read_version(uri, columns=["image_key", "patient_key", "label", "split", "source_sha256", "pixels"])
    return sorted(tuple(r.values()) for r in table.to_pylist())


@pytest.fixture
def corpus(tmp_path):
    labels = good_corpus(str(tmp_path / "source"), n_patients=6, images_per_patient=2)
    return tmp_path / "source", labels


def test_unchanged_rerun_adds_nothing_and_reads_no_file(tmp_path, corpus, ray_local):
    params = params_for(tmp_path, *corpus)
    first = ingest_flow(params)
    second = ingest_flow(params)
    assert first.added == 12 and first.version == 0 and first.unchanged_not_read == 0
    assert second.added == 0 and second.unchanged == 12 and second.version == 0
    assert second.unchanged_not_read == 12  # known by fingerprint: not even opened
    assert dataset.latest_version(params.dataset) == 0
    rehashed = ingest_flow(params.model_copy(update={"rehash": True}))
    assert rehashed.unchanged == 12 and rehashed.unchanged_not_read == 0


def test_a_file_rewritten_with_same_size_and_mtime_is_read_again(tmp_path, corpus, ray_local):
    source, labels = corpus
    params = params_for(tmp_path, source, labels)
    ingest_flow(params)
    target = next(source / r["path"] for r in read_csv(labels)  # an uncompressed one: any byte is a pixel
                  if not pydicom.dcmread(source / r["path"]).file_meta.TransferSyntaxUID.is_compressed)
    stat = os.stat(target)
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF  # one pixel changed, same size
    target.write_bytes(bytes(data))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # modification time put back
    summary = ingest_flow(params)
    assert summary.unchanged_not_read == 11 and summary.unchanged == 11
    assert summary.rejected_by_reason == {"duplicate_sop_instance_uid": 1}  # same UID, other pixels: caught


def test_a_damaged_fingerprint_cache_is_only_a_miss(tmp_path, corpus, ray_local):
    params = params_for(tmp_path, *corpus)
    ingest_flow(params)
    with open(fingerprints.cache_uri(params.dataset), "wb") as f:
        f.write(b"not parquet")
    summary = ingest_flow(params)
    assert summary.unchanged == 12 and summary.unchanged_not_read == 0 and summary.added == 0
    assert ingest_flow(params).unchanged_not_read == 12  # rewritten by the run before


def test_only_new_files_are_decoded_and_patients_keep_their_split(tmp_path, corpus, ray_local):
    source, labels = corpus
    params = params_for(tmp_path, source, labels)
    ingest_flow(params)
    before = {r["patient_key"]: r["split"] for r in dataset.read_version(params.dataset).to_pylist()}
    more = good_corpus(str(tmp_path / "more"), n_patients=4, images_per_patient=2, seed=1)
    for row in read_csv(more):  # new patients' files land in the same source
        os.makedirs(os.path.dirname(source / row["path"]), exist_ok=True)
        shutil.copy(tmp_path / "more" / row["path"], source / row["path"])
    with open(labels, "a") as f:
        f.writelines(f"{r['path']},{r['label']}\n" for r in read_csv(more))
    summary = ingest_flow(params)
    assert summary.added == 8 and summary.unchanged == 12 and summary.version == 1
    after = {r["patient_key"]: r["split"] for r in dataset.read_version(params.dataset).to_pylist()}
    assert all(after[p] == s for p, s in before.items())
    assert len(after) == 10
    assert dataset.read_version(params.dataset, version=0).num_rows == 12  # old version still readable


def test_crash_mid_publish_then_rerun_equals_one_clean_run(tmp_path, corpus, ray_local, monkeypatch):
    source, labels = corpus
    crashed = params_for(tmp_path, source, labels, "crashed")
    def crash_before_commit(*args, **kwargs):
        raise RuntimeError("simulated crash after the data files were written")

    monkeypatch.setattr(tasks.data.dataset, "commit_parts", crash_before_commit)
    with pytest.raises(Exception, match="simulated crash"):
        ingest_flow(crashed)
    monkeypatch.undo()
    assert any(name.startswith("part-") for name in os.listdir(crashed.dataset))  # orphan files exist...
    assert dataset.latest_version(crashed.dataset) is None  # ...but no version: nothing half-published
    rerun = ingest_flow(crashed)
    clean = params_for(tmp_path, source, labels, "clean")
    ingest_flow(clean)
    assert rerun.added == 12
    assert rows(crashed.dataset) == rows(clean.dataset)


def test_same_seed_same_splits_other_seed_differs(tmp_path, ray_local):
    labels = good_corpus(str(tmp_path / "source"), n_patients=20, images_per_patient=1)
    a, b = params_for(tmp_path, tmp_path / "source", labels, "a"), params_for(tmp_path, tmp_path / "source", labels, "b")
    c = params_for(tmp_path, tmp_path / "source", labels, "c").model_copy(update={"seed": 7})
    for p in (a, b, c):
        ingest_flow(p)
    split = lambda uri: [(r[0], r[3]) for r in rows(uri)]  # noqa: E731
    assert split(a.dataset) == split(b.dataset)
    assert split(a.dataset) != split(c.dataset)


def _race(monkeypatch, params: IngestParams) -> list:
    """Two ingests of the same dataset, both past reading it before either commits."""
    import threading

    real = tasks.data.dataset.commit_parts
    barrier = threading.Barrier(2, timeout=120)

    def commit_after_both_decided(*args, **kwargs):
        barrier.wait()
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks.data.dataset, "commit_parts", commit_after_both_decided)
    outcomes = run_together(lambda: ingest_flow(params).version)
    monkeypatch.undo()
    return outcomes


def test_two_concurrent_ingests_publish_one_version_without_duplicates(tmp_path, corpus, ray_local, monkeypatch):
    source, labels = corpus
    params = params_for(tmp_path, source, labels)
    for expected_version in (0, 1):
        outcomes = _race(monkeypatch, params)
        assert sorted(o for o in outcomes if isinstance(o, int)) == [expected_version]  # exactly one winner
        losers = [o for o in outcomes if not isinstance(o, int)]
        assert len(losers) == 1 and isinstance(losers[0], dataset.ConcurrentPublishError)
        assert dataset.latest_version(params.dataset) == expected_version
        keys = [r[0] for r in rows(params.dataset)]
        assert len(keys) == len(set(keys))  # no image twice
        assert ingest_flow(params).added == 0  # the loser's rerun finds nothing new
        if expected_version == 0:  # round two: new files arrive, two ingests race again
            good_corpus(str(tmp_path / "more"), n_patients=3, images_per_patient=2, seed=5)
            shutil.copytree(tmp_path / "more", source / "more", dirs_exist_ok=True)
            extra = read_csv(str(tmp_path / "more" / "labels.csv"))
            with open(labels, "a") as f:
                f.writelines(f"more/{r['path']},{r['label']}\n" for r in extra)
    assert dataset.read_version(params.dataset).num_rows == 18
