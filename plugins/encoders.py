"""Encoders: a small convnet for CPU-sized experiments, and torchvision ResNets.

Every encoder maps images (N, C, H, W) to representations (N, feature_dim) and takes its
input channels from the data, so 1-channel Fashion-MNIST needs no conversion to RGB.
Each may start from a weights file (`weights:`, read by `cmp.weights.load_weights`): the
same architecture trained by another library, or by an earlier cmp run.
"""

from __future__ import annotations

from typing import Literal

import torchvision
from torch import Tensor, nn

from cmp import hookimpl
from cmp.api.contracts import DataInfo, Encoder
from cmp.api.hookspecs import Register
from cmp.api.params import PositiveInt
from cmp.weights import Weights, load_weights


class ConvNet(Encoder):
    """Stages of 3x3 conv-BN-ReLU with 2x max-pooling between them, global average pool."""

    def __init__(self, in_channels: int, widths: list[int], convs_per_stage: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i, width in enumerate(widths):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            for _ in range(convs_per_stage):
                layers += [
                    nn.Conv2d(channels, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = channels

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x)).flatten(1)


def convnet(
    data: DataInfo, *, widths: tuple[PositiveInt, ...] = (32, 64, 128), convs_per_stage: PositiveInt = 1,
    weights: Weights | None = None, weights_key: str | None = None, weights_prefix: str | None = None,
) -> ConvNet:
    """A small convnet, fast enough to train on two CPU cores (feature_dim = last width);
    `weights`: a file to load it from (`weights_key`, `weights_prefix`: where in the file)."""
    net = ConvNet(data.channels, list(widths), convs_per_stage)
    if weights is not None:
        load_weights(net, weights, weights_key, weights_prefix, what="encoder 'convnet'")
    return net


class ResNet(Encoder):
    """A torchvision ResNet without its classifier; optional small-image stem."""

    def __init__(self, net: torchvision.models.ResNet, feature_dim: int) -> None:
        super().__init__()
        net.fc = nn.Identity()
        self.net = net
        self.feature_dim = feature_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _resnet(arch: Literal["resnet18", "resnet50"], data: DataInfo, small_image_stem: bool | None,
            weights: str | None, weights_key: str | None, weights_prefix: str | None) -> ResNet:
    net = getattr(torchvision.models, arch)(weights=None)
    feature_dim = net.fc.in_features
    small = data.height <= 64 if small_image_stem is None else small_image_stem
    if small:
        net.conv1 = nn.Conv2d(data.channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif data.channels != 3:
        net.conv1 = nn.Conv2d(data.channels, 64, 7, stride=2, padding=3, bias=False)
    encoder = ResNet(net, feature_dim)
    if weights is not None:  # torchvision's keys (`conv1.weight`), its classifier `fc.` dropped
        load_weights(encoder.net, weights, weights_key, weights_prefix, ignore=("fc.",), what=f"encoder '{arch}'")
    return encoder


def resnet18(
    data: DataInfo, *, small_image_stem: bool | None = None,
    weights: Weights | None = None, weights_key: str | None = None, weights_prefix: str | None = None,
) -> ResNet:
    """torchvision ResNet-18 (512 features); small_image_stem None: on for images <= 64 px.

    The small-image stem is a 3x3 stride-1 first convolution and no max-pool, as SimCLR
    and MoCo use on CIFAR. `weights`: a file to load it from (torchvision's key names).
    """
    return _resnet("resnet18", data, small_image_stem, weights, weights_key, weights_prefix)


def resnet50(
    data: DataInfo, *, small_image_stem: bool | None = None,
    weights: Weights | None = None, weights_key: str | None = None, weights_prefix: str | None = None,
) -> ResNet:
    """torchvision ResNet-50 (2048 features); small_image_stem None: on for images <= 64 px."""
    return _resnet("resnet50", data, small_image_stem, weights, weights_key, weights_prefix)


@hookimpl
def cmp_register_encoders(register: Register) -> None:
    register("convnet", convnet)
    register("resnet18", resnet18)
    register("resnet50", resnet50)
