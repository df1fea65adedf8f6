"""Test-time views: the flip, the centre zoom, which views a model card names, and evaluation's choice
among them on validation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from tasks.core import metrics
from tasks.data.samples import InMemory
from tasks.evaluate.evaluation import choose_tta, view_scores
from tasks.model.config import EvaluationConfig
from tasks.model.store import EnsembleModel, Member, ModelCard, Preprocessing
from tasks.model.views import View, centre_zoom, views


def test_a_card_names_the_plain_input_and_each_chosen_view():
    assert views(False, None) == [View()]
    assert views(True, None) == [View(), View(True)]
    assert views(False, 1.1) == [View(), View(False, 1.1)]
    assert views(True, 1.1) == [View(), View(True), View(False, 1.1), View(True, 1.1)]
    assert Preprocessing(image_size=8, tta_hflip=True, tta_zoom=1.2).views == views(True, 1.2)


@pytest.mark.parametrize("shape", [(3, 1, 16, 16), (2, 1, 12, 12, 12)])
def test_the_centre_zoom_magnifies_about_the_centre_and_keeps_the_size(shape):
    x = torch.zeros(shape)
    centre = tuple(slice(n // 4, n - n // 4) for n in shape[2:])
    x[(..., *centre)] = 1.0  # a bright centre half, a dark border
    zoomed = centre_zoom(x, 2.0)
    assert zoomed.shape == x.shape
    assert zoomed.mean() > 0.85 > 0.5 > x.mean()  # the bright centre now fills (almost) the whole input
    assert torch.allclose(centre_zoom(torch.full(shape, 0.3), 1.1), torch.full(shape, 0.3))  # flat stays flat
    ramp = torch.arange(shape[-1], dtype=torch.float32).expand(shape)
    assert torch.equal(View(True, 1.5)(ramp), torch.flip(centre_zoom(ramp, 1.5), dims=[-1]))


class MeanBrightness(nn.Module):
    """Logit of class 1 = the input's mean brightness: left-right flips change nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.mean(dim=tuple(range(1, x.dim())))
        return torch.stack([-z, z], dim=1)


def validation(signal_in_centre: bool) -> InMemory:
    """16 px images whose class shows in the centre half (or only in the border), with strong noise elsewhere."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    images = rng.random((200, 16, 16)) * 120
    centre = np.zeros((16, 16), bool)
    centre[4:12, 4:12] = True
    region = centre if signal_in_centre else ~centre
    images[:, region] += 15 * labels[:, None]
    images[:, ~region] = rng.random((200, int((~region).sum()))) * 250
    return InMemory(images.astype(np.uint8), labels, np.arange(200))


def model() -> EnsembleModel:
    card = ModelCard(classes=["absent", "present"], preprocessing=Preprocessing(image_size=16),
                     members=[Member(name="m", architecture="x", seed=0, file="m.pt")])
    return EnsembleModel(card, [MeanBrightness()])


def test_auto_keeps_the_zoom_where_validation_says_it_helps_and_the_fewer_views_on_a_tie():
    config = EvaluationConfig(tta_zoom_factor=2.0)  # tta_hflip and tta_zoom: auto
    centred = validation(signal_in_centre=True)
    chosen = choose_tta(model(), centred, config, positive=1)
    assert set(chosen.val_auc) == {"plain", "hflip", "zoom", "hflip+zoom"}
    assert chosen.val_auc["zoom"] > chosen.val_auc["plain"] + 0.1
    assert (chosen.hflip, chosen.zoom) == (False, 2.0)  # a flip changes nothing here: the tie keeps fewer views
    kept = model()
    kept.card.preprocessing.tta_zoom = 2.0
    assert np.allclose(chosen.member_probs, kept.member_probs(centred.batches()))  # what predict will compute
    bordered = choose_tta(model(), validation(signal_in_centre=False), config, positive=1)
    assert bordered.zoom is None and bordered.val_auc["plain"] > bordered.val_auc["zoom"]
    pinned = choose_tta(model(), centred, EvaluationConfig(tta_hflip=False, tta_zoom=False), positive=1)
    assert (pinned.hflip, pinned.zoom, list(pinned.val_auc)) == (False, None, ["plain"])


def judged(labels: np.ndarray, **scores: np.ndarray) -> tuple[dict, dict]:
    """Each named score's ``view_scores`` (as ``choose_tta`` scores a set of views) over 1000 bootstrap
    resamples of ``labels``, as two dicts: the point scores and the resampled AUCs."""
    weights = metrics.patient_weights(np.arange(len(labels)), 1000, 0)
    judged = {name: view_scores(np.stack([1 - p, p], axis=1), labels, weights, 1)
              for name, p in ((name, 1 / (1 + np.exp(-s))) for name, s in scores.items())}
    return {name: j[0] for name, j in judged.items()}, {name: j[1] for name, j in judged.items()}


def test_a_view_is_added_only_for_a_gain_larger_than_validations_noise():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 300)
    plain = labels + rng.normal(0, 1.0, 300)
    lucky = labels + rng.normal(0, 1.0, 300)  # as good as plain in expectation, a little better on this draw
    scores, resampled = judged(labels, plain=plain, lucky=lucky)
    chosen, gap_se = metrics.simplest_within_noise(scores, resampled, noise_se=1.0)
    gain = scores["lucky"][0] - scores["plain"][0]
    assert 0 < gain < gap_se["plain"] and gap_se["lucky"] == 0.0
    assert chosen == "plain"  # within one standard error: the fewer views
    assert metrics.simplest_within_noise(scores, resampled, noise_se=0.0)[0] == "lucky"  # 0: the best, as before
    scores, resampled = judged(labels, plain=plain, better=plain + 0.5 * labels)  # a gain on every resample
    assert metrics.simplest_within_noise(scores, resampled, noise_se=1.0)[0] == "better"
    normal = labels == 0
    scores, resampled = judged(labels[normal], plain=plain[normal], other=lucky[normal])  # one class: no AUC
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no standard error, without a warning
        assert metrics.simplest_within_noise(scores, resampled, noise_se=1.0) == ("plain", {"plain": 0.0, "other": 0.0})
