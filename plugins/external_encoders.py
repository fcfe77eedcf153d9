"""Encoders of other libraries: any torchvision classification model, and timm's models.

Each is built by name with its classifier removed (torchvision: the last linear layer
replaced by an identity; timm: `num_classes=0`), its output size found by one forward
pass of a dummy image, and loaded from `weights:` a local file (`cmp.weights`). Such
weights were trained on images of their own size and normalisation (ImageNet's: about
224 px, ImageNet's mean and std), which are parameters here: `Adapted` turns cmp's
evaluation input (normalised with the data set's statistics) back into [0, 1], repeats a
grey channel into three, resizes to `image_size` and normalises as the weights expect,
and says so in `input_note` (the report's settings show it).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from cmp import hookimpl
from cmp.api import DataInfo, Encoder, ParamError, PositiveInt, Register
from cmp.weights import Weights, load_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Triple = tuple[float, float, float]


class Adapted(Encoder):
    """A network trained on other images, given the images it was trained on: the data's
    normalisation undone, grey repeated to `in_channels`, resized to `image_size`,
    normalised with `mean` / `std`, then `net` (its classifier removed)."""

    data_mean: Tensor
    data_std: Tensor
    mean: Tensor
    std: Tensor

    def __init__(self, net: nn.Module, feature_dim: int, data: DataInfo, image_size: int | None,
                 mean: tuple[float, ...], std: tuple[float, ...], in_channels: int = 3) -> None:
        super().__init__()
        if data.channels not in (1, in_channels):
            raise ValueError(f"the network takes {in_channels} channels; the data set has {data.channels}")
        self.net = net
        self.feature_dim = feature_dim
        self.image_size = image_size
        self.repeat = in_channels if data.channels == 1 and in_channels != 1 else 1
        for name, values in (("data_mean", data.mean), ("data_std", data.std), ("mean", mean), ("std", std)):
            self.register_buffer(name, torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        steps = (["grey repeated to 3 channels"] if self.repeat > 1 else []) + (
            [f"resized to {image_size} px"] if image_size is not None else []
        )
        steps.append(f"normalised with mean {_short(mean)}, std {_short(std)}")
        self.input_note = ", ".join(steps)

    def forward(self, x: Tensor) -> Tensor:
        x = x * self.data_std + self.data_mean
        if self.repeat > 1:
            x = x.expand(-1, self.repeat, -1, -1)
        size = self.image_size
        if size is not None and (x.shape[-1] != size or x.shape[-2] != size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return self.net((x - self.mean) / self.std)


def _short(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


def output_dim(net: nn.Module, channels: int, size: int) -> int:
    """The size of `net`'s output for one dummy image, computed in eval mode (mode restored)."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, channels, size, size))
    finally:
        net.train(was_training)
    if not isinstance(out, Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the network without its classifier gives {shape}, not (N, features)")
    return int(out.shape[1])


def remove_classifier(net: nn.Module) -> str:
    """Replace the last linear layer (the classifier) by an identity; its name (`fc`, `classifier.6`)."""
    linear = [name for name, module in net.named_modules() if isinstance(module, nn.Linear)]
    if not linear:
        raise ValueError("the network has no linear classifier to remove")
    name = linear[-1]
    parent_name, _, child = name.rpartition(".")
    setattr(net.get_submodule(parent_name) if parent_name else net, child, nn.Identity())
    return name


def torchvision_models() -> list[str]:
    """torchvision's classification models, by name."""
    return list(torchvision.models.list_models(module=torchvision.models))


def torchvision_encoder(
    data: DataInfo, *, arch: str, image_size: PositiveInt | None = 224,
    mean: Triple = IMAGENET_MEAN, std: Triple = IMAGENET_STD,
    weights: Weights | None = None, weights_key: str | None = None, weights_prefix: str | None = None,
) -> Adapted:
    """A torchvision classification model by name (`resnet18`, `vit_b_16`...), classifier
    removed, from `weights` (a local file; torchvision's own key names, under
    `weights_key` / `weights_prefix` if wrapped). `image_size`, `mean`, `std`: what the
    weights were trained on (None: the evaluation input's size)."""
    net = torchvision.models.get_model(arch, weights=None)
    head = remove_classifier(net)
    if weights is not None:
        load_weights(net, weights, weights_key, weights_prefix, ignore=(f"{head}.",),
                     what=f"encoder 'torchvision' ({arch})")
    feature_dim = output_dim(net, 3, image_size or max(data.height, 32))
    return Adapted(net, feature_dim, data, image_size, mean, std)


def check_torchvision(params: Mapping[str, Any]) -> None:
    arch = params["arch"]
    known = torchvision_models()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ParamError(("arch",), f"'{arch}' is no torchvision classification model{hint}; "
                         "torchvision.models.list_models() names them")


def _timm() -> ModuleType:
    try:
        return importlib.import_module("timm")
    except ImportError:
        raise ParamError(("arch",), "timm is not installed: pip install 'cmp-compare[timm]' (or pip install timm)") from None


def timm_encoder(
    data: DataInfo, *, arch: str, image_size: PositiveInt | None = None,
    mean: Triple | None = None, std: Triple | None = None,
    weights: Weights | None = None, weights_key: str | None = None, weights_prefix: str | None = None,
) -> Adapted:
    """A timm model by name, without its classifier (`num_classes=0`), from `weights` (a
    local file). `image_size`, `mean`, `std`: what the weights were trained on; None:
    the model's pretrained configuration's (`input_size`, `mean`, `std`)."""
    try:
        timm = _timm()
    except ParamError as exc:
        raise ValueError(exc.message) from None
    net = timm.create_model(arch, pretrained=False, num_classes=0)
    config = dict(getattr(net, "pretrained_cfg", None) or {})
    classifier = config.get("classifier")
    heads = classifier if isinstance(classifier, (list, tuple)) else [classifier] if classifier else []
    if weights is not None:
        load_weights(net, weights, weights_key, weights_prefix, ignore=tuple(f"{h}." for h in heads),
                     what=f"encoder 'timm' ({arch})")
    size = image_size or int(config.get("input_size", (3, 224, 224))[-1])
    feature_dim = output_dim(net, 3, size)
    return Adapted(net, feature_dim, data, size, tuple(mean or config.get("mean", IMAGENET_MEAN)),
                   tuple(std or config.get("std", IMAGENET_STD)))


def check_timm(params: Mapping[str, Any]) -> None:
    timm = _timm()
    if not timm.is_model(params["arch"]):
        close = difflib.get_close_matches(params["arch"], timm.list_models(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ParamError(("arch",), f"'{params['arch']}' is no timm model{hint}; timm.list_models() names them")


@hookimpl
def cmp_register_encoders(register: Register) -> None:
    register("torchvision", torchvision_encoder, check_params=check_torchvision)
    register("timm", timm_encoder, check_params=check_timm)
