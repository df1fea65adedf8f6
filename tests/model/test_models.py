"""The model registry: every network, 2-D or 3-D, takes one grayscale channel and returns one logit per class."""

from __future__ import annotations

import pytest
import torch

from tasks.model.architectures import ARCHITECTURES, UnknownModelError, build_model


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_forward_shape(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=3, image_size=32).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 32, 32))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_network_has_a_volume_variant(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=2, image_size=32, dims=3).eval()
    assert any(isinstance(m, torch.nn.Conv3d) for m in model.modules()) or name == "vit"
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 32, 32, 32))
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_unknown_name_lists_the_choices():
    with pytest.raises(UnknownModelError, match=r"unknown model 'resnet9'; choose one of \['densenet121'"):
        build_model("resnet9", 2, 32)
