"""The budget and boosting through the real train and evaluate flows (Ray Train workers, Prefect API):
a run sized by measured speed to a budget it cannot fully use, and a boosted ensemble."""

from __future__ import annotations

import json

import pytest

from flows.evaluate import EvaluateParams, evaluate_flow
from flows.train import TrainParams, train_flow
from tasks.core import storage
from tasks.model.config import EnsembleConfig
from tasks.model.folders import RunFolder
from tests.corpora import ingested_corpus


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("budget")
    _, uri = ingested_corpus(root, 30, 4, (0.6, 0.2, 0.2))
    return root, uri


def test_a_tight_budget_measures_speed_and_shortens_the_default_run(dataset):
    root, uri = dataset
    config = EnsembleConfig.model_validate({"architectures": ["seed_cnn"], "train": {"budget_minutes": 1.1}})
    summary = train_flow(TrainParams(dataset=uri, run=str(root / "tight"), config=config))
    plan = summary.plan
    assert plan.sized_by == "budget" and plan.seconds_per_step["seed_cnn"] > 0 and plan.augment_seconds > 0 and plan.slots == 2
    assert len(summary.members) == config.min_members  # the fewest members, each shortened
    assert all(length.steps < config.train.min_steps and length.sized_by == "budget" for length in plan.lengths.values())
    for record in summary.members:
        assert record.planned_steps == plan.lengths[record.name].steps and record.steps_run <= record.planned_steps
        assert record.stopped in ("completed", "early stopping", "shortened", "deadline")
    assert storage.read_json(RunFolder(str(root / "tight")).plan) == plan.model_dump(mode="json")  # a rerun keeps it


def test_boosted_members_train_in_sequence_on_reweighted_rows_and_combine_with_their_weights(tmp_path, ray_local):
    _, uri = ingested_corpus(tmp_path, 40, 4, (0.5, 0.3, 0.2))  # a validation split large enough to judge checks
    root = tmp_path
    config = EnsembleConfig.model_validate({
        "members": 2, "architectures": ["seed_cnn"], "boosting": True,  # enough steps that the first member learns
        "train": {"epochs": 8, "batch_size": 16, "learning_rate": 3e-3, "augment": {"affine": 0.3, "crop": 0}},
        "evaluation": {"bootstrap_resamples": 100, "combiners": ["mean", "boosted"]}})
    run = RunFolder(str(root / "boosted"))
    summary = train_flow(TrainParams(dataset=uri, run=run.uri, config=config))
    first, second = summary.members
    assert second.started >= first.finished  # in sequence: the second needs the first one's errors
    steps = [json.loads(open(run.boosting(m.name)).read()) for m in (first, second)]
    assert [s["weight"] for s in steps] == [first.boosting_weight, second.boosting_weight]
    weights = steps[0]["next_weights"]
    assert steps[0]["error"] < 0.5 and first.boosting_weight > 0  # better than chance: a positive vote
    assert abs(sum(weights) - 1) < 1e-6 and (max(weights) > min(weights) or steps[0]["error"] <= 1e-3)
    result = evaluate_flow(EvaluateParams(run=run.uri))
    doc = json.loads(open(run.metrics).read())
    assert "boosted" in doc["combiner_val_auc"]
    tta = doc["tta"]  # auto: every candidate scored on validation, the better one kept for predict
    assert set(tta["val_auc_of_the_members_mean"]) == {"plain", "hflip", "zoom", "hflip+zoom"}
    assert set(tta["se_of_the_gap_to_the_best"]) == set(tta["val_auc_of_the_members_mean"])
    from tasks.model import store as model_store

    preprocessing = model_store.load_card(run.model.uri).preprocessing
    assert (preprocessing.tta_hflip, preprocessing.tta_zoom) == (tta["hflip"], tta["zoom"])
    assert result.test.point["auc"] > 0.7


def test_the_same_dataset_version_config_and_seed_give_the_same_model(dataset):
    """Two runs, members trained concurrently (one thread each, data order seeded by member and epoch):
    every member's weights are bit-identical; another seed changes them (member i trains with seed + i,
    so the two members of one run are the same network and data under two seeds)."""
    import torch

    from tasks.model.store import load_weights

    root, uri = dataset
    config = EnsembleConfig.model_validate({"members": 2, "architectures": ["seed_cnn"], "train": {"epochs": 2}})
    runs = [RunFolder(str(root / name)) for name in ("same-a", "same-b")]
    summaries = [train_flow(TrainParams(dataset=uri, run=run.uri, config=config)) for run in runs]
    for member in ("member-0", "member-1"):
        a, b = (load_weights(run.model.weights(member)) for run in runs)
        assert all(torch.equal(a[k], b[k]) for k in a), member
    assert {m.name: m.seed for m in summaries[0].members} == {"member-0": 0, "member-1": 1}
    a, c = (load_weights(runs[0].model.weights(member)) for member in ("member-0", "member-1"))
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_pretraining_runs_on_ray_on_every_split_and_the_members_fine_tune_from_it(dataset):
    root, uri = dataset
    config = EnsembleConfig.model_validate({"members": 1, "architectures": ["seed_cnn"], "train": {"epochs": 1},
                                            "pretrain": {"enabled": True, "steps": 10, "batch_size": 16}})
    run = RunFolder(str(root / "pretrained"))
    summary = train_flow(TrainParams(dataset=uri, run=run.uri, config=config))
    record = storage.read_json(run.pretrained_record("seed_cnn"))
    assert record["images"] == 30 * 4 and len(record["losses"]) == 10  # all splits' images, no label read
    assert storage.exists(run.pretrained("seed_cnn")) and summary.members[0].steps_run > 0
