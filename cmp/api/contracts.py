"""The contracts between the engine and the components plugged into its slots.

One training step, for every method:

    images (uint8, on the device)
      -> augmentation(images, generator)            -> views v_0 .. v_{V-1}
      -> online network: encoder f -> h, head g -> z, optional predictor q -> p
      -> target branch: positives for each pair     (shared weights, or a momentum copy)
      -> negative source: negatives for the anchors (in-batch, a queue, none)
      -> loss(anchors, positives, negatives)        -> scalar
      -> optimizer step; target.update(...); negative_source.update(...)

A *pair* (i, j) makes the online output of view i an anchor and the target output of view
j its positive. Symmetric methods use (0, 1) and (1, 0); MoCo v2 uses (0, 1) only.
Components keep their own state (a queue owns its buffer, a momentum target its EMA) as
`nn.Module` parameters and buffers, so it moves with `.to(device)` and lands in the
checkpoint through `state_dict()` without the engine knowing it is there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict, Union

import numpy as np
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class DataInfo:
    """What components may know of the data: shape, classes and pixel statistics."""

    name: str
    channels: int
    height: int
    width: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass
class ImageData:
    """A labelled data set held as uint8 tensors: images (N, C, H, W), labels (N,) int64.

    `unlabeled_images`, when a data set has them (STL-10), join the training images for
    self-supervised training only; evaluation uses the labelled splits.
    """

    name: str
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    classes: list[str]
    unlabeled_images: Tensor | None = None

    def info(self) -> DataInfo:
        """Channels, size, classes and per-channel mean/std of the training images."""
        x = self.train_images
        n, c, h, w = x.shape
        sums = torch.zeros(c, dtype=torch.float64)
        squares = torch.zeros(c, dtype=torch.float64)
        for chunk in x.split(8192):
            f = chunk.to(torch.float64) / 255.0
            sums += f.sum(dim=(0, 2, 3))
            squares += (f * f).sum(dim=(0, 2, 3))
        count = n * h * w
        mean = sums / count
        std = (squares / count - mean * mean).clamp_min(1e-12).sqrt()
        return DataInfo(
            self.name, c, h, w, len(self.classes),
            tuple(float(m) for m in mean), tuple(float(s) for s in std),
        )


class EncodedImages(Protocol):
    """A split of encoded images with labels, read one at a time by index.

    What a streamed data set's `train` and `test` must offer; `cmp.streaming`'s folder
    index, tar shards and `Subset` do (its own `EncodedImages` is the same protocol, kept
    there so that the streaming library needs nothing of cmp's API).
    """

    classes: list[str]
    labels: np.ndarray
    """int64 (N,): each image's class index."""

    def __len__(self) -> int: ...

    def read(self, i: int) -> bytes:
        """The encoded bytes of image `i` (OSError when they cannot be read)."""
        ...

    def name(self, i: int) -> str:
        """Where image `i` lives, for messages (a file, or a shard and its member)."""
        ...


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""ImageNet's per-channel statistics (RGB, in [0, 1]), the usual fixed normalisation of photos."""


@dataclass
class StreamedData:
    """A labelled data set that stays encoded on disk (JPEG folders, tar shards).

    Training batches are decoded in `num_workers` worker processes, each image cropped
    at full resolution (a random resized crop with area fraction `crop_scale` and aspect
    ratio `crop_ratio`, seeded by (seed, epoch, image), see `cmp.streaming`) and resized
    to `size` x `size` uint8; evaluation decodes a central crop (`eval_fraction` of the
    shorter side) resized to `size`. `train` / `test` are `EncodedImages` (numpy int64
    `labels`, `classes`, `read(i)`, `name(i)`), as `cmp.streaming` builds them. `mean` / `std` are fixed
    statistics (ImageNet's, or an estimate from a fixed sample), since a pass over the
    data set to compute them would take as long as an epoch. More than `max_corrupt`
    (a fraction) undecodable images end the run with an error naming one of them.
    `decode_on`: "workers" decodes every image in the worker processes; "device" leaves
    the JPEGs to the main process, decoded in batches on the model's device (nvJPEG on
    a GPU, `cmp.streaming.device_decode`), the workers only reading bytes and choosing crops.
    """

    name: str
    train: EncodedImages
    test: EncodedImages
    classes: list[str]
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    eval_fraction: float = 0.875
    num_workers: int = 2
    max_corrupt: float = 0.01
    decode_on: str = "workers"

    def info(self) -> DataInfo:
        """Channels, the training size, classes and the fixed statistics."""
        return DataInfo(self.name, self.channels, self.size, self.size, len(self.classes), tuple(self.mean), tuple(self.std))


class Augmentation(nn.Module):
    """Batched augmentation: uint8 images (N, C, H, W) on the device -> `num_views` views.

    Every view is a float tensor (N, C, S, S), normalised with the data's mean and std,
    with random parameters drawn per sample from `generator` (so a run is repeatable and
    its augmentation stream resumes from a checkpoint). `preprocess` is the deterministic
    input used for evaluation: same size and normalisation, no randomness.
    """

    num_views: int = 2

    def forward(self, images: Tensor, generator: torch.Generator) -> list[Tensor]:
        raise NotImplementedError

    def preprocess(self, images: Tensor) -> Tensor:
        raise NotImplementedError


class Encoder(nn.Module):
    """images (N, C, H, W) float -> representations h (N, feature_dim).

    h is what the evaluators judge (never the projection head's output).
    """

    feature_dim: int


class Head(nn.Module):
    """Projection head or predictor: (N, in_dim) -> (N, out_dim)."""

    out_dim: int


@dataclass
class PairBatch:
    """The embeddings of one step, as the negative source and the loss see them.

    anchors:    (A, D) online outputs (after the predictor, if any), one row per pair row
    positives:  (A, D) target outputs, row r the positive of anchors[r]
    anchor_ids: (A,) int64, index in the data set of the image behind each anchor row
    keys:       (M, D) every target-side embedding computed this step (all positive views)
    key_ids:    (M,) int64, index in the data set of the image behind each key
    key_views:  how many positive views `keys` holds, as equal chunks of N rows in view
                order (for gathering keys across processes in one process's layout)
    pairs:      the (anchor view, positive view) of each of the equal chunks of N rows of
                `anchors` and `positives`, in order; the positive views' chunks of `keys`
                are in ascending view order, so pair (i, j)'s positives are the chunk of
                `keys` at j's rank among the positive views. Empty where not known (a batch
                built by hand); the engine's batches always say.

    Ids are data-set indices, unique within a step's batch: rows with equal ids are views
    of one image (in-batch negatives mask them out), and a memory that keeps embeddings
    across steps can recognise an anchor's own image from an earlier epoch.
    """

    anchors: Tensor
    positives: Tensor
    anchor_ids: Tensor
    keys: Tensor
    key_ids: Tensor
    key_views: int = 1
    pairs: tuple[tuple[int, int], ...] = ()

    @property
    def positive_views(self) -> list[int]:
        """The views whose target embeddings `keys` holds, in its chunks' order."""
        return sorted({j for _, j in self.pairs})

    def key_chunk(self, pair: int) -> int:
        """The chunk of `keys` holding the positives of pair number `pair`."""
        return self.positive_views.index(self.pairs[pair][1])


@dataclass
class Negatives:
    """Negatives for a set of anchors.

    bank:  (K, D) candidate negatives (not necessarily normalised).
    valid: (A, K) bool, True where bank row k is a negative of anchor a; None means every
           row is a negative of every anchor (a queue). In-batch negatives mask out the
           anchor's own image, which is how SimCLR's 2N-2 negatives per anchor arise.
    """

    bank: Tensor
    valid: Tensor | None = None


class Loss(Protocol):
    """anchors (A, D), positives (A, D), negatives or None -> scalar tensor.

    The loss owns any normalisation: the built-in contrastive losses compare cosines; a
    loss on raw embeddings (VICReg's variance term) gets them unnormalised. Register with
    `needs_negatives=True` when the loss cannot work without negatives; the recipe check
    then refuses `negative_source: none` for it before anything is built.
    """

    def __call__(self, anchors: Tensor, positives: Tensor, negatives: Negatives | None) -> Tensor: ...


class TargetBranch(nn.Module):
    """Where positives come from.

    `positives(views, which, online)` returns, for each view index in `which`, the target
    embedding (N, D) of that view. `online` holds the online network's outputs z (before
    any predictor) of the views the engine already forwarded; a shared-weights target
    returns those (with gradient, or detached), a momentum target computes its own under
    `torch.no_grad()` and never lets a gradient reach its weights.

    `uses_online` tells the engine whether the online outputs of the positive views are
    needed (so it forwards them). `update(online, progress, batch)` runs after every
    optimizer step with progress = finished steps / total steps in [0, 1] (for momentum
    schedules) and the step's `PairBatch` (for targets that keep a memory of embeddings).
    The factory is told the online network and the embedding size `dim`.
    """

    uses_online: bool = True

    def positives(
        self, views: Sequence[Tensor], which: Sequence[int], online: Mapping[int, Tensor]
    ) -> dict[int, Tensor]:
        raise NotImplementedError

    def update(self, online: nn.Module, progress: float, batch: PairBatch) -> None:
        """After the optimizer step; nothing to do for shared weights."""

    def stats(self) -> dict[str, float]:
        """Scalars worth logging (a momentum target's current momentum)."""
        return {}


class NegativeSource(nn.Module):
    """What each anchor is contrasted against.

    `negatives(batch)` runs before the loss and returns `Negatives` or None (no
    negatives: BYOL). `update(batch)` runs after the optimizer step (a queue enqueues
    `batch.keys`, detached). Any state lives in buffers, so it is checkpointed.
    """

    def negatives(self, batch: PairBatch) -> Negatives | None:
        raise NotImplementedError

    def update(self, batch: PairBatch) -> None:
        """After the optimizer step; nothing to do for in-batch negatives."""

    def stats(self) -> dict[str, float]:
        """Scalars worth logging (a queue's fill)."""
        return {}


class StatefulObjective(nn.Module):
    """A step's loss with parameters or state of its own (SwAV's prototypes and queue,
    DINO's centre): the `objectives` slot, chosen by a method's `objective` key.

    When a cell has one, the engine calls it instead of a loss function:
    `forward(batch, progress)` returns the step's scalar loss from the `PairBatch`
    (anchors: online outputs, one chunk per pair; keys: the target's embeddings of the
    positive views; `batch.pairs` says which chunk is which) and `progress`, the finished
    fraction of training in [0, 1] before this step (what epoch-based schedules become:
    a warm-up over the first 10 % is `progress < 0.1`). `update(batch, progress)` runs
    after each optimizer step (progress then counts that step), `stats()` gives scalars
    to log. It is a submodule of the learner: its parameters are trained with the rest
    (and averaged across processes by DDP), its buffers move with `.to(device)` and are
    saved in every checkpoint. A statistic over the global batch goes through `cmp.nn`
    (`all_reduce_sum`, `gather`, `sinkhorn_knopp`). Any buffer must hold the same value on
    every process: DDP copies process 0's buffers to the others before each step.

    `frozen_parameters(progress)` names parameters to leave untouched at this progress:
    their gradients are dropped before the optimizer step, as SwAV's code does with its
    prototypes during the first epoch. Any module of the learner may define it (DINO's
    head does, for its last layer).
    The factory is told `dim`, the width of the anchors.
    """

    def forward(self, batch: PairBatch, progress: float) -> Tensor:
        raise NotImplementedError

    def update(self, batch: PairBatch, progress: float) -> None:
        """After the optimizer step; nothing to do by default."""

    def stats(self) -> dict[str, float]:
        """Scalars worth logging (a queue's fill, a temperature)."""
        return {}

    def frozen_parameters(self, progress: float) -> list[Tensor]:
        """Parameters whose gradient is dropped before the optimizer step at `progress`."""
        return []


@dataclass(frozen=True)
class Features:
    """Frozen encoder features of a split: x (N, F) float32, y (N,) int64, on one device.

    `views`, on the test split only, when an evaluator has an attribute `needs_views =
    True` and the engine was given the augmentation: the encoder's features (M, F) of two
    augmented views of the same images, a fixed, seeded subset of the split (at most
    `cmp.evaluation.splits.VIEW_IMAGES` images, the same ones and the same augmentation
    draws at every evaluation), row i of each the same image: positive pairs, for
    measures such as alignment. None otherwise (a baseline is evaluated without views).
    """

    x: Tensor
    y: Tensor
    num_classes: int
    views: tuple[Tensor, Tensor] | None = None


class Evaluator(Protocol):
    """train features, test features -> metrics such as {"top1": 0.87}."""

    def __call__(self, train: Features, test: Features) -> dict[str, float]: ...


class ChoiceSpec(TypedDict, total=False):
    """A component chosen as a recipe writes it: `{"name": "mlp", "params": {"out_dim": 128}}`."""

    name: str
    params: Mapping[str, Any]


PartValue = Union[str, ChoiceSpec, None]
"""What a preset gives a part: a component's name, a `ChoiceSpec`, or None (an optional part left out)."""

StepValue = Union[str, bool, Sequence[Sequence[int]]]
"""What a preset gives a step option: `pairs` a pairing's name or [anchor view, positive
view] pairs, `joint_forward` a flag."""


@dataclass(frozen=True)
class MethodPreset:
    """A method as named slot choices, written as a recipe writes them.

    `parts` keys are those of a recipe's `methods.<name>`: the parts of
    `cmp.api.slots.PARTS` (encoder, projection_head, predictor, target, negative_source,
    loss, optimizer, schedule, augmentation), each a `PartValue`, and the step options of
    `STEP_OPTIONS` (pairs, joint_forward), each a `StepValue`. The keys are checked when
    the preset registers, the values with the recipe. A recipe's `defaults` and the
    method's own keys override them.
    """

    parts: Mapping[str, PartValue | StepValue]
    description: str = ""


@dataclass
class StepOutput:
    """The loss of one step and the embeddings it came from (None: not contrastive)."""

    loss: Tensor
    batch: PairBatch | None


class Objective(Protocol):
    """What the engine's training loop trains: a module whose call gives a step's loss.

    `__call__(views, ids)` -> `StepOutput` (`ids`: the batch's data-set indices);
    `after_step(batch, progress)` runs after each optimizer step, `stats()` gives scalars
    to log. A supervised baseline's objective is one (`plugins/baselines.py`).
    """

    def __call__(self, views: list[Tensor], ids: Tensor) -> StepOutput: ...

    def after_step(self, batch: Any, progress: float) -> None: ...

    def stats(self) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...
