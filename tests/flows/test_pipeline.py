"""The retraining pipeline through real flows: ingest -> train -> evaluate -> promote, no retraining
of a version already evaluated, the decision stored and shown, the champion usable by name."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from flows.pipeline import PipelineParams, PipelineResult, retrain_flow
from medflow.cli import main
from tasks.serve import model_registry as registry
from tests.conftest import latest_artifact, run_together
from tests.corpora import good_corpus, read_csv

CONFIG = {"members": 1, "architectures": ["seed_cnn"],  # orchestration under test: one member is an ensemble too
          "train": {"epochs": 2, "batch_size": 32, "learning_rate": 3e-3, "augment": {"affine": 0.3, "crop": 0}},
          "evaluation": {"bootstrap_resamples": 200}}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("pipeline")
    labels = good_corpus(str(root / "src"), n_patients=40, images_per_patient=3)
    params = PipelineParams(source=str(root / "src"), labels=labels, dataset=str(root / "ds"), rejects=str(root / "rej.csv"),
                            runs=str(root / "runs"), registry=str(root / "registry"), task="chest", image_size=32,
                            config=CONFIG)
    return root, params, retrain_flow(params)


def test_first_run_trains_evaluates_and_promotes(first_run):
    root, params, result = first_run
    assert result.dataset_version == 0 and result.run.startswith(str(root / "runs" / "chest" / "v0-"))
    decision = result.promotion
    assert decision.promoted and decision.reason == "no champion yet"
    assert registry.champion(params.registry, "chest").model == f"{result.run}/model"
    stored = json.loads(open(f"{result.run}/promotion.json").read())  # stored beside the model
    assert stored["promoted"] and stored["champion_after"] == f"{result.run}/model"
    lineage = json.loads(open(f"{result.run}/lineage.json").read())
    assert lineage["dataset_version"] == 0 and lineage["prefect_flow_run_id"] and lineage["code_version"]


def test_same_version_and_config_is_not_retrained(first_run):
    _, params, _ = first_run
    again = retrain_flow(params)
    assert again.ingest.added == 0 and again.run is None and again.promotion is None


def test_new_data_gets_a_new_run_judged_against_the_champion(first_run):
    root, params, first = first_run
    good_corpus(str(root / "more"), n_patients=12, images_per_patient=3, seed=9)
    shutil.copytree(root / "more", root / "src" / "more", dirs_exist_ok=True)
    with open(params.ingest.labels, "a") as f:
        f.writelines(f"more/{r['path']},{r['label']}\n" for r in read_csv(str(root / "more" / "labels.csv")))
    second = retrain_flow(params)
    assert second.dataset_version == 1 and second.run != first.run
    decision = second.promotion
    assert decision.champion_before == f"{first.run}/model"
    assert all(getattr(decision, k) is not None for k in ("challenger_auc", "champion_auc", "delta_ci95", "promote"))
    expected = second.run + "/model" if decision.promote else first.run + "/model"
    assert registry.champion(params.registry, "chest").model == expected
    assert "delta_ci95" in latest_artifact("promotion-chest").data


def test_cli_run_promote_rollback_and_predict_the_champion(first_run, tmp_path, capfd):
    root, params, first = first_run
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    assert main(["run", "--config", str(config)]) == 0
    assert "nothing retrained" in capfd.readouterr().out
    champion_before = registry.champion(params.registry, "chest").model
    other = first.run if champion_before != f"{first.run}/model" else sorted((root / "runs" / "chest").iterdir())[-1]
    assert main(["promote", "--run", str(other), "--task", "chest", "--registry", params.registry, "--force"]) == 0
    assert "promoted — manual promotion" in capfd.readouterr().out
    assert main(["rollback", "--task", "chest", "--registry", params.registry]) == 0
    assert registry.champion(params.registry, "chest").model == champion_before
    capfd.readouterr()
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", "champion:chest", "--registry", params.registry, params.ingest.source, "--out", str(out)]) == 0
    assert len(read_csv(str(out))) == 40 * 3 + 12 * 3 + 2  # every file, the two labels CSVs refused
    assert main(["predict", "--model", "champion:none", "--registry", params.registry, params.ingest.source, "--out", str(out)]) == 2
    assert "no champion for task 'none'" in capfd.readouterr().err


def test_two_pipeline_runs_at_once_publish_one_version_and_consistent_pointers(tmp_path, ray_local):
    from tasks.data import dataset

    labels = good_corpus(str(tmp_path / "src"), n_patients=30, images_per_patient=3, seed=3)
    params = PipelineParams(source=str(tmp_path / "src"), labels=labels, dataset=str(tmp_path / "ds"),
                            rejects=str(tmp_path / "rej.csv"), runs=str(tmp_path / "runs"),
                            registry=str(tmp_path / "registry"), task="race", image_size=32,
                            config=CONFIG)
    results = run_together(lambda: retrain_flow(params))
    assert all(isinstance(r, PipelineResult) for r in results), results
    assert dataset.latest_version(params.ingest.dataset) == 0  # one version...
    keys = dataset.read_version(params.ingest.dataset, columns=["image_key"]).column("image_key").to_pylist()
    assert len(keys) == len(set(keys)) == 90  # ...every image once
    run_folders = {r.run for r in results if r.run}
    assert len(run_folders) == len([r for r in results if r.run])  # never two runs in one folder
    pointers = registry.history(params.registry, "race")
    assert [p.seq for p in pointers] == list(range(len(pointers))) and 1 <= len(pointers) <= 2
    assert [p.replaces for p in pointers] == [None, 0][: len(pointers)]
    assert registry.champion(params.registry, "race").model in {f"{f}/model" for f in run_folders}
