"""The run config: YAML file, overrides, member plans, clear errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tasks.model.config import KIND_DEFAULTS, EnsembleConfig, load_config


def test_defaults_without_a_file():
    config = load_config(None)
    assert config == EnsembleConfig()
    assert config.members is None  # sized to the budget, at most max_members
    assert [p.name for p in config.plans()] == [f"member-{i}" for i in range(config.most_members)]
    assert [p.name for p in config.plans(2)] == ["member-0", "member-1"]


def test_the_dataset_kind_picks_the_defaults_it_leaves_unset_and_configured_ones_are_kept():
    images, volumes = EnsembleConfig().for_dims(2), EnsembleConfig().for_dims(3)
    assert [p.architecture for p in images.plans(3)] == ["resnet18_small", "seed_cnn", "resnet18_small"]
    assert images.most_members == 8 and volumes.most_members == 2
    assert [p.architecture for p in volumes.plans()] == KIND_DEFAULTS[3]["architectures"] == ["resnet18_slices", "seed_cnn_strided"]
    assert EnsembleConfig().plans() == images.plans()  # unresolved: the images' defaults
    chosen = EnsembleConfig(architectures=["resnet18"], max_members=4)
    assert chosen.for_dims(3) is chosen and {p.architecture for p in chosen.for_dims(3).plans()} == {"resnet18"}
    assert EnsembleConfig(min_members=3).for_dims(3).most_members == 3  # never below min_members
    assert EnsembleConfig(architectures=["seed_cnn"]).for_dims(3).most_members == 2


def test_yaml_then_flags_override_it(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("members: 4\narchitectures: [resnet18, seed_cnn]\nseed: 10\ntrain:\n  epochs: 7\n  augment:\n    noise: 0\n")
    config = load_config(str(path), {"members": 3, "train.epochs": None, "workers": 2})
    assert config.members == 3 and config.workers == 2  # flags win; None means "not given"
    assert config.train.epochs == 7 and config.train.augment.noise == 0 and config.train.augment.horizontal_flip == 0.5
    plans = config.plans()
    assert [(p.architecture, p.seed) for p in plans] == [("resnet18", 10), ("seed_cnn", 11), ("resnet18", 12)]
    member = config.member_config(plans[1])
    assert member.model == "seed_cnn" and member.seed == 11 and member.epochs == 7


@pytest.mark.parametrize(("text", "message"), [
    ("architectures: [alexnet]", "unknown architecture"),
    ("evaluation: {combiners: [median]}", "combiners must be a non-empty subset"),
    ("train: {epochs: 0}", "greater than or equal to 1"),
    ("members: many", "valid integer"),
    ("bagging: true\nboosting: true", "exclude each other"),
    ("min_members: 5\nmax_members: 3", "above max_members"),
])
def test_invalid_configs_name_the_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValidationError, match=message):
        load_config(str(path))


def test_a_yaml_list_is_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        load_config(str(path))
