"""A decoder that kills its process (a segfault on a hostile file) costs that file, not the run.

The crashes are real: for this module Ray's workers start with a setup hook that makes reading any
file whose path holds ``CRASH`` exit the worker process at once, as a native decoder's segfault would.
Ingestion quarantines the file as ``decode_failed``; prediction writes a ``decode_failed`` row; every
other file of the crashed batch still gets its result.
"""

from __future__ import annotations

import csv
import io
import os
import shutil

import numpy as np
import pytest

from tasks.core.refusals import Reason, RefusedItem
from tasks.ingest import decode as ingest_decode
from tasks.ingest.batch import KnownDigests
from tasks.ingest.labels import plan
from tasks.model.architectures import build_model
from tasks.model.store import EnsembleModel, Member, ModelCard, Preprocessing
from tasks.serve.predict import predict, predict_source
from tests.conftest import TEST_KEY, start_local_ray
from tests.corpora import append_rows, good_corpus

MARKER = "CRASH"


def _exit_when_reading_marked_files():
    """A setup hook for Ray's worker processes; built here so that it pickles by value (workers
    cannot import ``tests``)."""

    def hook() -> None:
        import os

        import tasks.dicom.source
        import tasks.ingest.batch
        import tasks.serve.predict

        read = tasks.dicom.source.read_source

        def read_or_die(uri, *args, **kwargs):
            if "CRASH" in uri:
                os._exit(139)  # no exception, no cleanup: the process is gone
            return read(uri, *args, **kwargs)

        tasks.ingest.batch.read_source = read_or_die
        tasks.serve.predict.read_source = read_or_die

    return hook


@pytest.fixture(scope="module")
def crashing_workers(ray_local):
    ray_local.shutdown()
    start_local_ray(runtime_env={"worker_process_setup_hook": _exit_when_reading_marked_files()})
    yield
    ray_local.shutdown()
    start_local_ray()  # the session's plain Ray, for the tests that follow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[str, str]:
    """40 good files and one marked file in the middle of a batch."""
    root = str(tmp_path_factory.mktemp("crash") / "src")
    labels = good_corpus(root, n_patients=10, images_per_patient=4)
    first = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".dcm"))[0]
    os.makedirs(os.path.join(root, "hostile"))
    shutil.copy(first, os.path.join(root, "hostile", f"{MARKER}.dcm"))
    append_rows(labels, [(f"hostile/{MARKER}.dcm", "normal")])
    return root, labels


def test_ingestion_quarantines_the_file_that_kills_its_worker(crashing_workers, corpus):
    root, labels = corpus
    work = plan(root, labels)
    marked = next(item.index for item in work.items if MARKER in item.path)
    decoded = ingest_decode.decode_all(root, work.items, KnownDigests(), TEST_KEY, 16)
    rejects = [r for result in decoded.results for r in result.rejects]
    assert rejects == [RefusedItem(marked, Reason.DECODE_FAILED, "decoder process crashed")]
    decoded_indexes = sorted(i for result in decoded.results for i in result.index)
    assert decoded_indexes == [item.index for item in work.items if item.index != marked]  # no other file lost


def _untrained_model() -> EnsembleModel:
    card = ModelCard(classes=["abnormal", "normal"], preprocessing=Preprocessing(image_size=16),
                     members=[Member(name="m", architecture="seed_cnn", seed=0, file="m.pt")])
    return EnsembleModel(card, [build_model("seed_cnn", 2, 16).eval()])


def test_prediction_writes_a_row_for_the_file_that_kills_its_worker(crashing_workers, corpus):
    root, _ = corpus
    model = _untrained_model()
    predictions = predict(model, root)
    rows = {r["path"]: r for r in csv.DictReader(io.StringIO(predictions.csv))}
    crashed = rows.pop(f"hostile/{MARKER}.dcm")
    assert crashed["predicted"] == "" and crashed["p_normal"] == "" and crashed["reason"] == "decode_failed"
    assert predictions.refused == {"decode_failed": 1, "not_dicom": 1}  # the crash and labels.csv
    # every other file as predicted in one process (where reading the marked file does not crash)
    expected = {r["path"]: r for r in csv.DictReader(io.StringIO(predict_source(model, root).csv))}
    assert expected.pop(f"hostile/{MARKER}.dcm")["reason"] == ""
    assert list(rows) == list(expected)
    for path, row in rows.items():
        assert (row["predicted"], row["reason"]) == (expected[path]["predicted"], expected[path]["reason"])
        if not row["reason"]:
            np.testing.assert_allclose(float(row["p_normal"]), float(expected[path]["p_normal"]), atol=1e-5)
