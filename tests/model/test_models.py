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
    if name == "resnet18_slices":  # 2-D convolutions over the volume's 32 slices as channels
        assert next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).in_channels == 32
    else:
        assert any(isinstance(m, torch.nn.Conv3d) for m in model.modules()) or name == "vit"
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 32, 32, 32))
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_unknown_name_lists_the_choices():
    with pytest.raises(UnknownModelError, match=r"unknown model 'resnet9'; choose one of \['densenet121'"):
        build_model("resnet9", 2, 32)


def test_the_slices_network_sees_every_slice_and_is_resnet18_small_on_images():
    torch.manual_seed(0)
    model = build_model("resnet18_slices", num_classes=2, image_size=16, dims=3).eval()
    volume = torch.randn(1, 1, 16, 16, 16)
    changed = volume.clone()
    changed[0, 0, 15] += 3.0  # the last slice only
    with torch.no_grad():
        assert not torch.allclose(model(volume), model(changed))
    image = build_model("resnet18_slices", 2, 16)
    assert [p.shape for p in image.parameters()] == [p.shape for p in build_model("resnet18_small", 2, 16).parameters()]
