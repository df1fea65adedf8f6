"""The training run's configuration: one pydantic model, loadable from YAML, with working defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from tasks import storage
from tasks.ensemble import COMBINERS
from tasks.models import REGISTRY
from tasks.train_loop import TrainConfig


class EvaluationConfig(BaseModel):
    """How members are combined and judged; every choice is fitted on validation, reported on test."""

    combiners: list[str] = Field(default_factory=lambda: list(COMBINERS), description="candidates; the best on validation wins")
    temperature_scaling: bool = Field(True, description="fit a temperature on validation")
    tta_hflip: bool = Field(False, description="test-time augmentation: average over a left-right flip")
    bootstrap_resamples: int = Field(1000, ge=100, description="patient-level bootstrap resamples for the 95% CIs")
    positive_class: str | None = Field(None, description="binary tasks: the positive class (default: the one not named normal/negative)")
    seed: int = 0

    @field_validator("combiners")
    @classmethod
    def known_combiners(cls, names: list[str]) -> list[str]:
        unknown = sorted(set(names) - set(COMBINERS))
        if unknown or not names:
            raise ValueError(f"combiners must be a non-empty subset of {list(COMBINERS)}, got {names}")
        return names


class MemberPlan(BaseModel):
    name: str
    architecture: str
    seed: int


class RunConfig(BaseModel):
    """An ensemble: ``members`` networks, architectures taken in turn, each with its own seed."""

    members: int = Field(4, ge=1, description="ensemble size")
    architectures: list[str] = Field(default_factory=lambda: ["resnet18"], description="taken in turn by the members")
    bagging: bool = Field(False, description="each member trains on a bootstrap resample of the training split")
    workers: int = Field(1, ge=1, description="Ray Train workers (DDP) per member")
    cpus_per_worker: int = Field(1, ge=1)
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="Ray placement of a member's workers: SPREAD puts them on different nodes")
    max_failures: int = Field(2, ge=0, description="worker-group restarts (from the last checkpoint) per member")
    seed: int = Field(0, description="member i trains with seed + i")
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)

    @field_validator("architectures")
    @classmethod
    def known_architectures(cls, names: list[str]) -> list[str]:
        unknown = sorted(set(names) - set(REGISTRY))
        if unknown or not names:
            raise ValueError(f"unknown architecture(s) {unknown}; choose from {sorted(REGISTRY)}")
        return names

    def plans(self) -> list[MemberPlan]:
        return [MemberPlan(name=f"member-{i}", architecture=self.architectures[i % len(self.architectures)],
                           seed=self.seed + i) for i in range(self.members)]

    def member_config(self, plan: MemberPlan) -> TrainConfig:
        return self.train.model_copy(update={"model": plan.architecture, "seed": plan.seed})


def load_config(uri: str | None, overrides: dict | None = None) -> RunConfig:
    """A RunConfig from a YAML file (path or ``s3://``) or the defaults, then ``overrides`` applied;
    dotted keys reach nested fields (``train.epochs``)."""
    import yaml

    data = yaml.safe_load(storage.read_bytes(storage.normalize(uri))) if uri else {}
    if not isinstance(data or {}, dict):
        raise ValueError(f"config {uri} must be a YAML mapping")
    data = data or {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return RunConfig.model_validate(data)
