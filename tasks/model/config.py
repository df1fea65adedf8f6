"""The run's configuration: augmentation, the per-member training loop, evaluation and the ensemble
(``EnsembleConfig``), pydantic models loadable from YAML, with working defaults."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from copy import copy
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from tasks.core import storage
from tasks.model.architectures import ARCHITECTURES

# the ensemble's combiners (tasks/model/ensemble.py); also the tie-break order: simplest first. Named here so that
# a training worker reads its config without importing the ensemble's fitting (scikit-learn, SciPy)
COMBINERS = ("mean", "weighted", "stacking", "vote", "boosted")

Precision = Literal["auto", "float32", "bfloat16", "float16"]


class AugmentConfig(BaseModel):
    """Training-time augmentation; every probability 0 switches that transform off."""

    horizontal_flip: float = Field(0.5, ge=0, le=1, description="probability of a left-right flip")
    vertical_flip: float = Field(0.0, ge=0, le=1, description="probability of an up-down flip")
    affine: float = Field(0.7, ge=0, le=1, description="probability of rotate/scale/translate")
    rotate_degrees: float = Field(10, ge=0, le=180)
    scale: float = Field(0.1, ge=0, le=0.5, description="zoom in or out by up to this fraction")
    translate: float = Field(0.06, ge=0, le=0.5, description="shift by up to this fraction of the side")
    brightness_contrast: float = Field(0.5, ge=0, le=1, description="probability of a brightness/contrast change")
    brightness_contrast_limit: float = Field(0.15, ge=0, le=1)
    noise: float = Field(0.2, ge=0, le=1, description="probability of Gaussian noise")
    noise_std: float = Field(0.03, ge=0, le=0.5, description="noise standard deviation, fraction of full scale")
    crop: float = Field(0.3, ge=0, le=1, description="probability of a random resized crop")
    crop_min_area: float = Field(0.8, gt=0, le=1, description="smallest crop, as a fraction of the image area")
    coarse_dropout: float = Field(0.0, ge=0, le=1, description="probability of blanking 1-4 random boxes "
                                  "(images: CoarseDropout; volumes: CoarseDropout3D)")
    dropout_size: float = Field(0.2, gt=0, le=0.5, description="a box's largest side, as a fraction of the image's")
    symmetry: float = Field(0.0, ge=0, le=1, description="probability of a random symmetry of the square (images: D4, "
                            "8 of them) or of the cube (volumes: CubicSymmetry, 48); for anatomy without a fixed orientation")


class TrainConfig(BaseModel):
    """One ensemble member's training; the defaults train well on small radiographs.

    A default run is sized in optimizer steps (``min_steps``, ``min_epochs``) and capped by the
    run's ``budget_minutes``; ``epochs`` or ``steps`` override that sizing exactly."""

    model: str = Field("resnet18_small", description="architecture name (tasks/model/architectures.py)")
    epochs: int | None = Field(None, ge=1, description="explicit override: exactly this many epochs, checked every epoch")
    steps: int | None = Field(None, ge=1, description="explicit override: this many optimizer steps (whole epochs)")
    min_steps: int = Field(1500, ge=1, description="a default run: at least this many optimizer steps")
    min_epochs: int = Field(30, ge=1, description="a default run: at least this many epochs")
    budget_minutes: float | None = Field(30, gt=0, description="wall-clock budget of the whole train + evaluate; "
                                         "caps the default run's steps and members (None: no cap)")
    fill_budget: Literal["large", "always", "never"] = Field(
        "large", description="when the default members fit the budget with room to spare, each whose lane's share "
        "of it is longer than its default run grows to that share: large, only runs sized by min_epochs (a split "
        "large enough that min_epochs give more than min_steps); always, every default run; never, none")
    checks: int = Field(30, ge=1, description="validation checks (each a checkpoint) over a run sized in steps")
    early_stopping_patience: int | None = Field(None, ge=1, description="checks without a better smoothed validation "
                                                "AUC before stopping (default: a quarter of the checks; with epochs: none)")
    smoothing: int = Field(3, ge=1, description="validation AUC and loss are averaged over this many recent checks")
    weight_averaging: Literal["none", "ema"] = Field("ema", description="judge and keep an exponential moving "
                                                      "average of the weights")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="explicit decay of the weight average; default "
                                    "(null): 1 - 1 / (ema_window x the run's planned steps)")
    ema_window: float = Field(0.11, gt=0, le=1, description="the average's time constant as a share of the run's "
                              "planned steps (4440 steps: about 0.998), so that it forgets at the pace of the run")
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(2e-3, gt=0, description="peak AdamW learning rate (one-cycle schedule)")
    weight_decay: float = Field(1e-4, ge=0)
    class_weighted_loss: bool = Field(True, description="weight the loss by inverse class frequency")
    init_weights: str | None = Field(None, description="start from this local state dict (path or s3://); "
                                     "tensors matching by name and shape are loaded")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    seed: int = 0
    num_threads: int = Field(0, ge=0, description="torch CPU threads; 0 keeps torch's default")
    precision: Precision = Field(
        "auto", description="training steps' arithmetic: auto is float16 autocast on CUDA, bfloat16 autocast on "
        "CPUs with bfloat16 units (AMX, AVX-512 BF16), else float32 (tasks/train/precision.py)")
    loader_workers: int | None = Field(None, ge=0, description="data loader processes that read and augment "
                                       "batches beside training; default 4 on a GPU, 0 (in the training process) on CPU")
    shuffle_buffer: int = Field(2048, ge=1, description="images held for shuffling when streaming from the dataset")


class PretrainConfig(BaseModel):
    """Self-supervised pretraining (SimCLR) of each architecture on every image of the dataset
    version, all splits' pixels and no labels, before the members fine-tune from it."""

    enabled: bool = Field(False, description="off unless validation shows a gain on your data")
    steps: int = Field(1000, ge=1)
    batch_size: int = Field(64, ge=2, description="images per step; each gives two views")
    learning_rate: float = Field(1e-3, gt=0)
    temperature: float = Field(0.2, gt=0, description="of the NT-Xent contrastive loss")
    embedding: int = Field(128, ge=2, description="projection size (the network's output layer while pretraining)")
    augment: AugmentConfig = Field(default_factory=lambda: AugmentConfig(
        crop=1.0, crop_min_area=0.4, brightness_contrast=0.8, brightness_contrast_limit=0.3, noise=0.5),
        description="the two views' augmentation: stronger than supervised training's")


def known_names(names: list[str], known: Iterable[str], message: Callable[[list[str]], str]) -> list[str]:
    """``names`` when it is a non-empty list of known names; else a ValueError saying ``message(unknown)``."""
    unknown = sorted(set(names) - set(known))
    if unknown or not names:
        raise ValueError(message(unknown))
    return names


class EvaluationConfig(BaseModel):
    """How members are combined and judged; every choice is fitted on validation, reported on test."""

    combiners: list[str] = Field(default_factory=lambda: list(COMBINERS), description="candidates; the simplest "
                                 "whose validation AUC is within combiner_noise_se of the best's wins")
    combiner_noise_se: float = Field(1.0, ge=0.0, description="the simplest combiner (in the order of COMBINERS) whose "
                                     "validation AUC is within this many standard errors (paired patient bootstrap) of "
                                     "the best's; 0: the best")
    temperature_scaling: bool = Field(True, description="fit a temperature on validation")
    class_bias: bool = Field(True, description="with temperature scaling, also fit a per-class bias: undoes the "
                             "class-weighted loss's shift towards rare classes, so p >= 0.5 is the likelier class")
    tta_hflip: bool | Literal["auto"] = Field("auto", description="test-time augmentation: average over a left-right "
                                              "flip; auto: where it gives the better validation AUC (then loss) by more than "
                                              "validation's noise (tta_noise_se)")
    tta_zoom: bool | Literal["auto"] = Field("auto", description="test-time augmentation: average over a centre zoom by "
                                             "tta_zoom_factor too; auto: as tta_hflip, the two chosen together")
    tta_zoom_factor: float = Field(1.1, gt=1.0, le=2.0, description="the test-time zoom's magnification")
    tta_noise_se: float = Field(1.0, ge=0.0, description="auto: the fewest views whose validation AUC is within this "
                                "many standard errors (paired patient bootstrap) of the best set's; 0: the best set")
    bootstrap_resamples: int = Field(1000, ge=100, description="patient-level bootstrap resamples for the 95% CIs")
    positive_class: str | None = Field(None, description="binary tasks: the positive class (default: the one not named normal/negative)")
    seed: int = 0

    @field_validator("combiners")
    @classmethod
    def known_combiners(cls, names: list[str]) -> list[str]:
        return known_names(names, COMBINERS, lambda _: f"combiners must be a non-empty subset of {list(COMBINERS)}, got {names}")


class MemberPlan(BaseModel):
    name: str
    architecture: str
    seed: int


# the defaults that depend on the dataset's kind (2: images, 3: volumes), chosen on validation (README,
# "How the defaults were chosen"). Volumes: a network that convolves in 3-D at full resolution costs
# 10-14x the cheap ones a step on a CPU without bfloat16 units and was still learning after 30
# minutes, while the cheap 2.5-D and strided 3-D members kept gaining beyond a 1500-step run: two
# members, each filling its lane of the budget
KIND_DEFAULTS: dict[int, dict] = {
    2: {"architectures": ["resnet18_small", "seed_cnn"], "max_members": 8},
    3: {"architectures": ["resnet18_slices", "seed_cnn_strided"], "max_members": 2},
}


class EnsembleConfig(BaseModel):
    """An ensemble: members (sized to the budget unless ``members`` is given), architectures taken in
    turn, each member with its own seed; independent, bagged, or boosted in sequence."""

    members: int | None = Field(None, ge=1, description="ensemble size (default: as many as the budget allows, "
                                "from min_members to max_members)")
    min_members: int = Field(2, ge=1)
    max_members: int | None = Field(None, ge=1, description="default: the dataset kind's (KIND_DEFAULTS): 8 for "
                                    "images, 2 for volumes")
    architectures: list[str] | None = Field(None, description="taken in turn by the members (default: the dataset "
                                            "kind's, KIND_DEFAULTS)")
    bagging: bool = Field(False, description="each member trains on a bootstrap resample of the training split")
    boosting: bool = Field(False, description="members train in sequence, each on the training split resampled "
                           "towards what the ones before got wrong (SAMME); combined with the fitted weights")
    workers: int = Field(1, ge=1, description="Ray Train workers (DDP) per member")
    cpus_per_worker: int = Field(1, ge=1)
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="Ray placement of a member's workers: SPREAD puts them on different nodes")
    max_failures: int = Field(2, ge=0, description="worker-group restarts (from the last checkpoint) per member")
    seed: int = Field(0, description="member i trains with seed + i")
    train: TrainConfig = Field(default_factory=TrainConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)

    @field_validator("architectures")
    @classmethod
    def known_architectures(cls, names: list[str] | None) -> list[str] | None:
        return names if names is None else known_names(
            names, ARCHITECTURES, lambda unknown: f"unknown architecture(s) {unknown}; choose from {sorted(ARCHITECTURES)}")

    @model_validator(mode="after")
    def consistent(self) -> EnsembleConfig:
        if self.bagging and self.boosting:
            raise ValueError("bagging and boosting exclude each other: choose one")
        if self.max_members is not None and self.min_members > self.max_members:
            raise ValueError(f"min_members ({self.min_members}) is above max_members ({self.max_members})")
        return self

    def for_dims(self, dims: int) -> EnsembleConfig:
        """This config for a dataset of images (``dims`` 2) or volumes (3): the kind's defaults
        (``KIND_DEFAULTS``) where the config leaves a field unset."""
        update = {key: copy(value) for key, value in KIND_DEFAULTS[dims].items() if getattr(self, key) is None}
        if "max_members" in update:
            update["max_members"] = max(update["max_members"], self.min_members)
        return self.model_copy(update=update) if update else self

    @property
    def most_members(self) -> int:
        """``max_members``; unset, the images' default (``for_dims`` gives a volume dataset's)."""
        return self.for_dims(2).max_members

    def plans(self, count: int | None = None) -> list[MemberPlan]:
        """``count`` members (default ``members``, else ``most_members``); without configured
        architectures, the images' defaults (``for_dims`` gives a volume dataset's)."""
        count = count or self.members or self.most_members
        names = self.for_dims(2).architectures
        return [MemberPlan(name=f"member-{i}", architecture=names[i % len(names)], seed=self.seed + i)
                for i in range(count)]

    def member_architectures(self) -> list[str]:
        """The architectures the default members (``plans()``) train, each once, sorted."""
        return sorted({p.architecture for p in self.plans()})

    def member_config(self, plan: MemberPlan) -> TrainConfig:
        return self.train.model_copy(update={"model": plan.architecture, "seed": plan.seed})


def load_config(uri: str | None, overrides: dict | None = None) -> EnsembleConfig:
    """A EnsembleConfig from a YAML file (path or ``s3://``) or the defaults, then ``overrides`` applied;
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
    return EnsembleConfig.model_validate(data)
