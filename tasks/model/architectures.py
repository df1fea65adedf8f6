"""Model registry: networks chosen by name, all single-channel classifiers returning logits, 2-D for
image datasets and 3-D (``dims=3``, MONAI's ``spatial_dims=3``) for volume datasets.

No pretrained weights are downloaded (this runs offline); every network starts from random init.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def _nets():
    """MONAI's networks, imported where a MONAI network is built: ``import monai`` loads every MONAI
    module (about 3 s), which a Ray Train controller, the driver and a seed_cnn member never need."""
    from monai.networks import nets

    return nets


class SeedCNN(nn.Module):
    """The seed project's CNN: two (conv-conv-pool-dropout) blocks, dense 512, dropout, class head.
    ``stride`` 2: the first convolution strides (the ``seed_cnn_strided`` variant)."""

    def __init__(self, num_classes: int, image_size: int, in_channels: int = 1, dropout: float = 0.25,
                 stride: int = 1) -> None:
        super().__init__()

        def block(cin: int, cout: int, first_stride: int = 1) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride=first_stride, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True),
                nn.MaxPool2d(2), nn.Dropout(dropout),
            )

        self.features = nn.Sequential(block(in_channels, 32, stride), block(32, 64))
        side = -(-image_size // stride) // 4  # the first convolution's ceil(size / stride), pooled twice
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * side * side, 512), nn.ReLU(inplace=True),
            nn.Dropout(2 * dropout), nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # logits; softmax is applied by the loss / at inference


class SeedCNN3D(nn.Module):
    """The seed CNN's shape for volumes: three (conv-conv-pool-dropout) blocks of 16, 32, 64 channels,
    then global average pooling (a dense layer on a flattened volume would hold most of the weights),
    dense 128, dropout, class head. ``stride`` 2: the first convolution strides, so the network
    convolves an eighth of the voxels from there on (the ``seed_cnn_strided`` variant, 5-10x cheaper a step)."""

    def __init__(self, num_classes: int, image_size: int, in_channels: int = 1, dropout: float = 0.2,
                 stride: int = 1) -> None:
        super().__init__()

        def block(cin: int, cout: int, first_stride: int = 1) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv3d(cin, cout, 3, stride=first_stride, padding=1), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
                nn.Conv3d(cout, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
                nn.MaxPool3d(2), nn.Dropout3d(dropout),
            )

        self.features = nn.Sequential(block(in_channels, 16, stride), block(16, 32), block(32, 64), nn.AdaptiveAvgPool3d(1))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(inplace=True), nn.Dropout(2 * dropout),
                                  nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ViTClassifier(nn.Module):
    """MONAI's ViT in classification mode, returning logits only."""

    def __init__(self, num_classes: int, image_size: int, in_channels: int = 1, dims: int = 2) -> None:
        super().__init__()
        patch = max(4, image_size // 8)
        self.vit = _nets().ViT(in_channels=in_channels, img_size=image_size, patch_size=patch, hidden_size=192,
                            mlp_dim=768, num_layers=6, num_heads=3, classification=True, num_classes=num_classes,
                            spatial_dims=dims, post_activation=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, _ = self.vit(x)
        return logits


def small_input_resnet18(num_classes: int, image_size: int, dims: int = 2, in_channels: int = 1) -> nn.Module:
    """ResNet-18 at half width with a stem that keeps small inputs' detail: a 3x3 stride-1 stem for
    images up to 32 px (28 px MedMNIST-size inputs reach the first block at 14 px, not 7), the usual
    7x7 stride-2 stem above that; both then max-pool. A quarter of ResNet-18's parameters."""
    stride = 1 if image_size <= 32 else 2
    return _nets().ResNet("basic", [2, 2, 2, 2], [32, 64, 128, 256], spatial_dims=dims, n_input_channels=in_channels,
                       num_classes=num_classes, conv1_t_size=3 if stride == 1 else 7, conv1_t_stride=stride)


class SlicesAsChannels(nn.Module):
    """2.5-D: a volume's slices (its first spatial axis) as the input channels of a 2-D network, which
    sees the whole volume at once and convolves in-plane only: a step costs about what one 2-D image's does."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1, 2))  # (N, 1, D, H, W) -> (N, D, H, W)


def resnet18_slices(num_classes: int, image_size: int, dims: int = 2) -> nn.Module:
    """``resnet18_small`` over a volume's slices as channels (ingested volumes are cubes: D = image
    size); on images, which are one slice, ``resnet18_small`` itself."""
    if dims == 2:
        return small_input_resnet18(num_classes, image_size)
    return SlicesAsChannels(small_input_resnet18(num_classes, image_size, in_channels=image_size))


def _resnet(name: str) -> Callable[[int, int, int], nn.Module]:
    return lambda num_classes, image_size, dims: getattr(_nets(), name)(spatial_dims=dims, n_input_channels=1,
                                                                        num_classes=num_classes)


# name -> factory(num_classes, image_size, dims): dims 2 for images, 3 for volumes
ARCHITECTURES: dict[str, Callable[[int, int, int], nn.Module]] = {
    "seed_cnn": lambda num_classes, image_size, dims: (SeedCNN if dims == 2 else SeedCNN3D)(num_classes, image_size),
    "seed_cnn_strided": lambda num_classes, image_size, dims: (SeedCNN if dims == 2 else SeedCNN3D)(
        num_classes, image_size, stride=2),
    "resnet18": _resnet("resnet18"),
    "resnet18_small": small_input_resnet18,
    "resnet18_slices": resnet18_slices,
    "resnet34": _resnet("resnet34"),
    "resnet50": _resnet("resnet50"),
    "densenet121": lambda num_classes, image_size, dims: _nets().DenseNet121(spatial_dims=dims, in_channels=1,
                                                                          out_channels=num_classes),
    "efficientnet_b0": lambda num_classes, image_size, dims: _nets().EfficientNetBN(
        "efficientnet-b0", pretrained=False, spatial_dims=dims, in_channels=1, num_classes=num_classes),
    "vit": lambda num_classes, image_size, dims: ViTClassifier(num_classes, image_size, dims=dims),
}


class UnknownModelError(ValueError):
    """A model name that is not in the registry."""


def build_model(name: str, num_classes: int, image_size: int, dims: int = 2) -> nn.Module:
    """A freshly initialised network by registry name (``dims`` 3: its volume variant)."""
    try:
        factory = ARCHITECTURES[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; choose one of {sorted(ARCHITECTURES)}") from None
    return factory(num_classes, image_size, dims)
