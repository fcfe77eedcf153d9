"""Encoders of other libraries: torchvision's classification models (and timm's) without
their classifier, their input made what the weights were trained on, loaded from a file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from cmp.api import ParamError
from cmp.api.contracts import DataInfo
from cmp.errors import CheckpointError
from cmp_plugins.external_encoders import check_timm, check_torchvision, timm_encoder, torchvision_encoder

GREY = DataInfo("digits", 1, 8, 8, 10, (0.3,), (0.2,))
RGB = DataInfo("rgb", 3, 16, 16, 10, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))


def test_a_torchvision_model_is_built_without_its_classifier_and_loaded_from_its_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = torchvision.models.resnet18(num_classes=5).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    encoder = torchvision_encoder(RGB, arch="resnet18", image_size=32, weights=str(path)).eval()
    assert encoder.feature_dim == 512
    state = encoder.net.state_dict()
    assert not any(k.startswith("fc.") for k in state)
    for key, value in state.items():
        assert torch.equal(value, source.state_dict()[key]), key

    images = torch.rand(4, 3, 16, 16)  # in [0, 1]
    evaluation_input = (images - torch.tensor(RGB.mean).view(1, 3, 1, 1)) / torch.tensor(RGB.std).view(1, 3, 1, 1)
    resized = F.interpolate(images, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    imagenet = (resized - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    source.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(encoder(evaluation_input), source(imagenet), rtol=1e-4, atol=1e-5)


def test_a_grey_data_set_is_repeated_into_three_channels_and_the_note_says_so() -> None:
    torch.manual_seed(1)
    encoder = torchvision_encoder(GREY, arch="mobilenet_v3_small", image_size=32).eval()
    assert encoder.input_note == ("grey repeated to 3 channels, resized to 32 px, "
                                  "normalised with mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)")
    grey = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        from_grey = encoder((grey - 0.3) / 0.2)
        rgb = F.interpolate(grey.expand(-1, 3, -1, -1), size=(32, 32), mode="bilinear", antialias=True,
                            align_corners=False)
        mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        torch.testing.assert_close(from_grey, encoder.net((rgb - mean) / std))
    assert from_grey.shape == (2, encoder.feature_dim) and encoder.feature_dim == 1024  # the last linear layer's input


def test_a_wrapped_torchvision_checkpoint_loads_with_its_prefix(tmp_path: Path) -> None:
    torch.manual_seed(2)
    source = torchvision.models.squeezenet1_0()  # no linear classifier at all: refused by name below
    with pytest.raises(ValueError, match="no linear classifier"):
        from cmp_plugins.external_encoders import remove_classifier

        remove_classifier(source)
    source = torchvision.models.mobilenet_v3_small(num_classes=3)
    path = tmp_path / "wrapped.pt"
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    encoder = torchvision_encoder(RGB, arch="mobilenet_v3_small", image_size=32, weights=str(path),
                                  weights_key="model", weights_prefix="module.")
    for key, value in encoder.net.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key


def test_weights_of_another_architecture_are_refused_naming_the_first_keys(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), path)
    with pytest.raises(CheckpointError, match=r"does not fit encoder 'torchvision' \(resnet18\): missing keys conv1.weight"):
        torchvision_encoder(RGB, arch="resnet18", image_size=32, weights=str(path))


def test_an_unknown_architecture_is_named_with_the_closest() -> None:
    with pytest.raises(ParamError, match="'resnet81' is no torchvision classification model \\(did you mean 'resnet18'\\?\\)"):
        check_torchvision({"arch": "resnet81"})


def test_a_timm_model_loads_from_a_file_when_timm_is_installed(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(3)
    source = timm.create_model("resnet10t", pretrained=False, num_classes=4)
    path = tmp_path / "timm.pth"
    torch.save(source.state_dict(), path)
    check_timm({"arch": "resnet10t"})
    encoder = timm_encoder(RGB, arch="resnet10t", image_size=32, weights=str(path))
    assert encoder.feature_dim == source.num_features
    for key, value in encoder.net.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key
    with pytest.raises(ParamError, match="no timm model"):
        check_timm({"arch": "resnet10tt"})


def test_timm_missing_is_a_clear_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # what Python does for a module that cannot be imported
    with pytest.raises(ParamError, match=r"timm is not installed: pip install 'cmp-compare\[timm\]'"):
        check_timm({"arch": "resnet18"})
    with pytest.raises(ValueError, match="timm is not installed"):
        timm_encoder(RGB, arch="resnet18")
