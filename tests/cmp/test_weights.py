"""Weights from files: each kind of checkpoint gives exactly the encoder's weights, a file
that does not fit is one error naming it and its first keys, a pickle that asks for code
runs none of it, and a weights file's value carries the sha256 of its contents."""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from cmp.api.contracts import DataInfo
from cmp.errors import CheckpointError
from cmp.weights import WeightsFile, load_weights, read_checkpoint, without_weights
from cmp_plugins.encoders import convnet, resnet18

DIGITS = DataInfo("digits", channels=1, height=8, width=8, num_classes=10, mean=(0.5,), std=(0.25,))


def same_weights(module: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = module.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


def trained_convnet(seed: int) -> nn.Module:
    """A convnet whose weights (BatchNorm statistics included) differ from a fresh one's."""
    torch.manual_seed(seed)
    net = convnet(DIGITS, widths=(4, 8))
    for tensor in net.state_dict().values():
        if tensor.is_floating_point():
            tensor.copy_(torch.randn_like(tensor))
    return net


def test_a_torchvision_state_dict_loads_into_cmp_resnet18_without_its_classifier(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = torchvision.models.resnet18(num_classes=7)
    path = tmp_path / "r18.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(2)
    encoder = resnet18(DataInfo("rgb", 3, 32, 32, 7, (0.5,) * 3, (0.25,) * 3), small_image_stem=False, weights=str(path))
    expected = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    same_weights(encoder.net, expected)


@pytest.mark.parametrize("prefix", ["module.", "backbone."])
def test_a_wrapped_state_dict_loads_with_its_prefix_given_or_found(tmp_path: Path, prefix: str) -> None:
    source = trained_convnet(3)
    wrapped = {"epoch": 9, "model": {f"{prefix}{k}": v for k, v in source.state_dict().items()}
               | {"head.weight": torch.ones(2, 8)}}
    path = tmp_path / "wrapped.pt"
    torch.save(wrapped, path)
    for given in (prefix, None):
        encoder = convnet(DIGITS, widths=(4, 8))
        load_weights(encoder, path, key="model", prefix=given)
        same_weights(encoder, source.state_dict())


def test_a_lightning_checkpoint_with_hyper_parameters_loads_its_backbone(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    import argparse

    class Module(pl.LightningModule):  # as lightly's examples: a backbone and a projection head
        def __init__(self, cfg: argparse.Namespace, root: Path) -> None:
            super().__init__()
            self.save_hyperparameters()  # non-tensor hyper-parameters travel in the checkpoint
            self.backbone = convnet(DIGITS, widths=(4, 8))
            self.projection_head = nn.Linear(8, 4)

        def training_step(self, batch: list[torch.Tensor], index: int) -> torch.Tensor:
            return self.projection_head(self.backbone(batch[0])).pow(2).mean()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(4)
    module = Module(argparse.Namespace(lr=0.1, name="simclr"), tmp_path)
    images = torch.utils.data.TensorDataset(torch.randn(16, 1, 8, 8))
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(module, torch.utils.data.DataLoader(images, batch_size=8))
    path = tmp_path / "lightly.ckpt"
    trainer.save_checkpoint(path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path))  # it does carry non-tensor objects
    encoder = convnet(DIGITS, widths=(4, 8))
    load_weights(encoder, path)  # found under state_dict, prefix backbone.
    same_weights(encoder, {k: v.cpu() for k, v in module.backbone.state_dict().items()})


def test_a_cmp_run_checkpoint_loads_its_online_encoder(tmp_path: Path) -> None:
    from cmp.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: tiny\ndata: {dataset: digits, subset: 64, test_subset: 32}\n"
        "train: {epochs: 1, batch_size: 32}\n"
        "defaults: {encoder: {name: convnet, params: {widths: [4, 8]}}}\n"
        "methods: {byol: {preset: byol}}\nbaselines: []\neval: {knn: {k: 5}}\n"
    )
    assert main(["run", str(recipe), "--out", str(tmp_path / "runs"), "--reports", str(tmp_path / "rep")]) == 0
    (path,) = (tmp_path / "runs" / "tiny").glob("*/checkpoint.pt")
    learner = torch.load(path, weights_only=True)["learner"]
    expected = {k.removeprefix("online.encoder."): v for k, v in learner.items() if k.startswith("online.encoder.")}
    assert any(k.startswith("target.") and k.endswith(next(iter(expected))) for k in learner)  # a momentum copy too
    encoder = convnet(DIGITS, widths=(4, 8))
    load_weights(encoder, path)
    same_weights(encoder, expected)


def test_missing_and_unexpected_keys_are_one_error_naming_the_file_and_the_first_keys(tmp_path: Path) -> None:
    state = trained_convnet(5).state_dict()
    path = tmp_path / "partial.pt"
    torch.save(OrderedDict((k, v) for k, v in state.items() if not k.startswith("features.1.")), path)
    encoder = convnet(DIGITS, widths=(4, 8))
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    with pytest.raises(CheckpointError) as caught:
        load_weights(encoder, path)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(f"{path}: does not fit")
    assert "missing keys features.1.weight, features.1.bias, features.1.running_mean (and 2 more)" in text
    same_weights(encoder, before)  # nothing half loaded

    torch.save({**state, "extra.weight": torch.ones(1)}, path)
    with pytest.raises(CheckpointError, match=r"unexpected keys extra.weight$"):
        load_weights(convnet(DIGITS, widths=(4, 8)), path, prefix="")


def test_a_shape_mismatch_names_the_key_and_both_shapes(tmp_path: Path) -> None:
    path = tmp_path / "wide.pt"
    torch.save(trained_convnet(6).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"shapes differ \(file vs encoder\): features.0.weight \(4, 1, 3, 3\) "
                       r"vs \(2, 1, 3, 3\)"):
        load_weights(convnet(DIGITS, widths=(2, 8)), path)


def test_a_file_that_is_no_checkpoint_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not weights")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as caught:
        load_weights(convnet(DIGITS), path)
    assert "\n" not in str(caught.value)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="holds a list, not a dict of weights"):
        load_weights(convnet(DIGITS), path)


class WritesAFile:
    """A pickle that would run code when loaded: `__reduce__` calls `os.system`."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.target}",))


def test_a_malicious_pickle_is_refused_naming_what_it_asked_for_and_runs_nothing(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": trained_convnet(7).state_dict(), "payload": WritesAFile(target)}, path)
    with pytest.raises(CheckpointError, match=r"refused: the file asks for '(posix|nt)\.system'"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_weights(convnet(DIGITS, widths=(4, 8)), path)
    assert not target.exists()


def test_a_weights_file_value_carries_the_sha256_of_its_contents(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save({"w": torch.ones(3)}, path)
    value = WeightsFile(str(path))
    assert value == str(path) and value.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert value.label == f"w.pt (sha256 {value.sha256[:12]})"
    import pickle

    again = pickle.loads(pickle.dumps(value))
    assert isinstance(again, WeightsFile) and again.sha256 == value.sha256
    assert without_weights({"arch": "resnet18", "weights": value, "weights_prefix": "module."}) == {"arch": "resnet18"}
