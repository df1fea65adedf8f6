"""The medflow command line: commands, summaries, exit codes."""

from __future__ import annotations

import os

import pytest

from medflow.cli import main
from tasks.data import dataset
from tests.corpora import good_corpus


@pytest.fixture
def corpus(tmp_cwd):
    return tmp_cwd, good_corpus(str(tmp_cwd / "src"), n_patients=4, images_per_patient=2)


def test_ingest_then_info_and_export(corpus, ray_local, capfd):
    root, labels = corpus
    assert main(["ingest", str(root / "src"), "--labels", labels, "--dataset", str(root / "ds"), "--image-size", "24"]) == 0
    out = capfd.readouterr().out
    assert "version 0" in out and "added 8" in out and f"rejects written to {root / 'rejects.csv'}" in out
    assert os.path.exists(root / "rejects.csv")
    ingest = ["ingest", str(root / "src"), "--labels", labels, "--dataset", str(root / "ds"), "--image-size", "24"]
    assert main(ingest) == 0
    assert "unchanged 8 (8 known by fingerprint, not read)" in capfd.readouterr().out
    assert main([*ingest, "--rehash"]) == 0
    assert "unchanged 8 (0 known by fingerprint, not read)" in capfd.readouterr().out
    assert main(["dataset", "info", str(root / "ds")]) == 0
    info = capfd.readouterr().out
    assert "rows 8" in info and "leakage audit: 0 patient(s)" in info
    assert main(["dataset", "export", str(root / "ds"), "--out", str(root / "x.parquet"), "--version", "0"]) == 0
    assert dataset.read_version(str(root / "ds")).column("height").to_pylist() == [24] * 8
    capfd.readouterr()
    assert main(["train", "--dataset", str(root / "ds"), "--run", str(root / "run"), "--workers", "3"]) == 2
    err = capfd.readouterr().err.strip()  # the local Ray has 2 CPUs: refused, not left waiting forever
    assert err == "medflow: error: a member needs 3 CPUs (workers x cpus_per_worker) but the local Ray has 2: " \
                  "lower --workers or cpus_per_worker, or set RAY_ADDRESS to a cluster with room"


def test_train_with_explicit_steps_says_what_it_spent(tmp_cwd, ray_local, capfd):
    labels = good_corpus(str(tmp_cwd / "src"), n_patients=12, images_per_patient=2)
    assert main(["ingest", str(tmp_cwd / "src"), "--labels", labels, "--dataset", "ds", "--image-size", "24"]) == 0
    capfd.readouterr()
    assert main(["train", "--dataset", "ds", "--run", "run", "--members", "1", "--steps", "3"]) == 0
    out = capfd.readouterr().out  # the summary says what the run spent and what sized it
    assert "trained 1 member, 1 at a time" in out and "sized by config" in out and "3 of 3 steps (3 epochs" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["ingest", "src", "--labels", "nope.csv", "--dataset", "ds"], "labels CSV not found"),
        (["ingest", "src", "--labels", "src/labels.csv", "--dataset", "ds", "--rejects", "ds/r.csv"], "inside the dataset"),
        (["ingest", "src", "--labels", "src/labels.csv", "--dataset", "ds", "--split-fractions", "1,1"], "three numbers"),
        (["dataset", "info", "no-such-dataset"], "no medflow dataset"),
        (["train", "--dataset", "no-such-dataset", "--run", "run"], "run `medflow ingest` first"),
        (["train", "--dataset", "ds", "--run", "run", "--config", "nope.yaml"], "No such file"),
        (["train", "--dataset", "ds", "--run", "run", "--config", "src/bad.yaml"], "unknown architecture(s) ['alexnet']"),
        (["train", "--dataset", "ds", "--run", "run", "--members", "0"], "members: Input should be greater than or equal to 1"),
        (["train", "--dataset", "ds", "--run", "run", "--steps", "0"], "steps: Input should be greater than or equal to 1"),
        (["train", "--dataset", "ds", "--run", "run", "--budget-minutes", "0"], "budget_minutes: Input should be greater than 0"),
        (["evaluate", "--run", "no-such-run"], "no trained model"),
        (["predict", "--model", "no-such-model", "src", "--out", "p.csv"], "no model at"),
        (["predict", "--model", "m", "no-such-source", "--out", "p.csv"], "source not found"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(corpus, capfd, args, message):
    (corpus[0] / "src" / "bad.yaml").write_text("members: 2\narchitectures: [alexnet]\n")
    assert main(args) == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith("medflow: error: ") and message in err and len(err.splitlines()) == 1


def test_labels_without_required_columns(corpus, capfd):
    root, _ = corpus
    (root / "bad.csv").write_text("file,class\na.dcm,x\n")
    assert main(["ingest", "src", "--labels", "bad.csv", "--dataset", "ds"]) == 2
    assert "lacks column(s) ['label', 'path']" in capfd.readouterr().err


def test_split_leakage_in_csv_fails_the_ingest(corpus, ray_local, capfd):
    root, labels = corpus
    lines = open(labels).read().splitlines()
    rows = [line + ("," + ("train" if i % 2 else "test") if i else ",split") for i, line in enumerate(lines)]
    (root / "split.csv").write_text("\n".join(rows) + "\n")  # each patient's two images in two splits
    assert main(["ingest", "src", "--labels", "split.csv", "--dataset", "ds"]) == 2
    last_line = capfd.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith("medflow: error: 4 patient(s) would be in more than one split")
    assert dataset.latest_version(str(root / "ds")) is None
    assert main(["ingest", "src", "--labels", "split.csv", "--dataset", "ds", "--allow-split-leakage"]) == 0
    assert "in several splits: 4" in capfd.readouterr().out


def test_demo(tmp_cwd, ray_local, capfd, monkeypatch):
    monkeypatch.delenv("MEDFLOW_PSEUDONYM_KEY")
    assert main(["demo", "--out", "demo", "--patients", "16", "--images-per-patient", "2", "--epochs", "1"]) == 0
    out = capfd.readouterr().out
    assert "using a local demo key" in out and "added 32" in out
    assert "member-1 (resnet18, seed 1)" in out and "member-2 (seed_cnn, seed 2)" in out
    assert "ensemble: " in out and "test: AUC" in out
    report = out.split("report: ", 1)[1].split()[0]
    assert report.endswith("index.html") and os.path.exists(report)
    assert oct(os.stat(tmp_cwd / "demo" / "pseudonym.key").st_mode)[-3:] == "600"


def test_demo_on_volumes(tmp_cwd, ray_local, capfd):
    assert main(["demo", "--volumes", "--patients", "12", "--epochs", "2"]) == 0
    out = capfd.readouterr().out
    assert "writing a synthetic DICOM CT series corpus" in out and "volumes 24x24x24" in out and "added 24" in out
    assert "member-1 (seed_cnn_strided, seed 1)" in out and "test: AUC" in out
    report = out.split("report: ", 1)[1].split()[0]
    assert os.path.exists(report) and os.path.exists(tmp_cwd / "medflow-demo-volumes" / "runs")
    assert "montage_test.png" in open(report).read()


def test_the_image_size_is_the_datasets_contract(corpus, ray_local, capfd):
    root, labels = corpus  # 32 px sources
    ingest = ["ingest", "src", "--labels", labels, "--dataset", "ds"]
    assert main(ingest) == 0  # a new dataset without --image-size: the sources' size, and the summary says so
    out = capfd.readouterr().out
    assert "version 0, images 32x32" in out and "note: new dataset: image size 32 from the sources" in out
    assert dataset.geometry(str(root / "ds")).image_size == 32
    assert main([*ingest, "--image-size", "64"]) == 2  # another size: refused before anything is decoded
    err = capfd.readouterr().err.strip()
    assert err == (f"medflow: error: dataset {root / 'ds'} stores 32x32 images; --image-size 64 would mix sizes in one "
                   "dataset (omit --image-size, or use a new --dataset)")
    assert dataset.latest_version(str(root / "ds")) == 0
    assert main(ingest) == 0  # without --image-size an existing dataset keeps its own
    out = capfd.readouterr().out
    assert "images 32x32" in out and "unchanged 8" in out and "note:" not in out
