"""uint8 batches decoded in DataLoader workers: training crops by permutation, evaluation in order.

`StreamingSource.epoch(epoch, perm, start_step)` yields, for step i from `start_step`,
this process's rows `rank*b:(rank+1)*b` of the global batch `perm[i*B:(i+1)*B]` (the
trainer's convention; the last partial batch is dropped, as the trainer does), each image
cropped at full resolution with its own (seed, epoch, id) generator: a resumed epoch
yields exactly the batches the uninterrupted one would have from there. A worker decodes
a whole batch into one (b, C, S, S) tensor; at most `num_workers * prefetch_factor`
batches are in flight, so memory does not grow with the data set.

`stream_eval` yields the deterministic evaluation input (central crop, resized) of a
range of samples in order, so features can be computed batch by batch without holding
the images.

Corrupt images: a sample whose bytes no decoder reads is replaced by the next readable
sample in index order (deterministic, so a resumed run sees the same), keeping its own id
(ids in a batch stay unique: a step's in-batch masks rely on it), with a
`CorruptImageWarning` naming the file for the first `WARN_FILES` of them; when more than
`max_corrupt` (a fraction of the data set) are found, or no readable image follows one,
it is a `DataError` naming the file. One unreadable JPEG in a million (ImageNet has a
few odd files) should not end a week's run, but a broken copy of the data set should stop
it early and say where.

`decode_device` moves JPEG decoding out of the workers: they read the bytes and header and
choose the crop box, and the batch is decoded on that device in the main process
(`cmp.streaming.device_decode`: nvJPEG on a GPU). The crops are the same boxes either way.
"""

from __future__ import annotations

import warnings
from collections.abc import Generator, Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from cmp.errors import CmpWarning, DataError
from cmp.streaming.decode import (
    Box,
    CorruptImage,
    CropSpec,
    center_box,
    crop_generator,
    decode_bytes,
    random_crop_box,
    resized_crop,
)
from cmp.streaming.device_decode import Pending, decode_pending, device_decoding_available, image_header
from cmp.streaming.index import EncodedImages, Subset

REPLACEMENT_TRIES = 8
"""Samples tried in index order after a corrupt one before the batch gives up."""
WARN_FILES = 10
"""Corrupt files named in a warning each; later ones are only counted."""


class CorruptImageWarning(CmpWarning):
    """An image could not be decoded and another sample stands in for it."""


class Batch(NamedTuple):
    """What a worker hands over: images (b, C, S, S) uint8, ids (b,) and labels (b,) int64.

    `corrupt` lists (sample index, reason) of the files that failed to decode for this
    batch; `lost` the ids for which no readable replacement was found (their rows are 0);
    `pending` the JPEGs left for the main process to decode on its device (their rows
    are 0 until then).
    """

    images: Tensor
    ids: Tensor
    labels: Tensor
    corrupt: tuple[tuple[int, str], ...] = ()
    lost: tuple[int, ...] = ()
    pending: tuple[Pending, ...] = ()


Key = tuple[int, list[int]]
"""A batch to decode: (epoch, sample ids)."""


class _Decoder(Dataset[Batch]):
    """Runs in a worker: a batch key -> the decoded batch (training or evaluation crops).

    With `defer_jpeg` a JPEG is only read and its crop box chosen; the main process
    decodes it (`complete`).
    """

    def __init__(self, images: EncodedImages, channels: int, size: int, crop: CropSpec | None, seed: int,
                 fraction: float, *, defer_jpeg: bool) -> None:
        self.images = images
        self.channels = channels
        self.size = size
        self.crop = crop
        self.seed = seed
        self.fraction = fraction
        self.defer_jpeg = defer_jpeg

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: Key) -> Batch:
        epoch, ids = key
        out = torch.zeros((len(ids), self.channels, self.size, self.size), dtype=torch.uint8)
        corrupt: list[tuple[int, str]] = []
        lost: list[int] = []
        pending: list[Pending] | None = [] if self.defer_jpeg else None
        for row, i in enumerate(ids):
            self._fill(out, row, i, epoch, 0, corrupt, lost, pending)
        labels = torch.from_numpy(self.images.labels[ids])
        return Batch(out, torch.tensor(ids, dtype=torch.int64), labels, tuple(corrupt), tuple(lost), tuple(pending or ()))

    def _fill(self, out: Tensor, row: int, i: int, epoch: int, first: int, corrupt: list[tuple[int, str]],
              lost: list[int], pending: list[Pending] | None) -> None:
        """Row `row` of `out`: the crop of sample `i`, or of the next readable sample from try
        `first` on (sample i + try); a JPEG goes to `pending` instead when that is given."""
        n = len(self.images)
        for attempt in range(first, min(REPLACEMENT_TRIES, n)):
            j = (i + attempt) % n
            try:
                data = self.images.read(j)
                if pending is not None:
                    kind, height, width = image_header(data)
                    if kind == "JPEG":
                        pending.append(Pending(row, j, torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                               self._box(height, width, epoch, i)))
                        return
                out[row] = self._crop(data, epoch, i)
                return
            except (CorruptImage, OSError) as exc:
                corrupt.append((j, str(exc)))
        lost.append(i)

    def _crop(self, data: bytes, epoch: int, i: int) -> Tensor:
        image = decode_bytes(data, self.channels)
        return resized_crop(image, self._box(image.shape[1], image.shape[2], epoch, i), self.size)

    def _box(self, height: int, width: int, epoch: int, i: int) -> Box:
        if self.crop is None:
            return center_box(height, width, self.fraction)
        return random_crop_box(height, width, self.crop, crop_generator(self.seed, epoch, i))

    def complete(self, batch: Batch, epoch: int, device: torch.device) -> Batch:
        """The batch with its pending JPEGs decoded on `device` (the whole batch moved there);
        one nothing can decode is replaced by the next readable sample, as in a worker."""
        images, failed = decode_pending(batch.images, batch.pending, self.channels, self.size, device)
        corrupt, lost = list(batch.corrupt), list(batch.lost)
        n = len(self.images)
        for item, reason in failed:
            corrupt.append((item.sample, reason))
            i = int(batch.ids[item.row])
            row = torch.zeros((1, self.channels, self.size, self.size), dtype=torch.uint8)
            self._fill(row, 0, i, epoch, (item.sample - i) % n + 1, corrupt, lost, None)
            images[item.row] = row[0].to(device)
        return batch._replace(images=images, corrupt=tuple(corrupt), lost=tuple(lost), pending=())


class _Keys(Sampler[Key]):
    """The batches of one pass, set before each pass (a persistent loader keeps this object)."""

    def __init__(self) -> None:
        self.epoch = 0
        self.rows: list[Tensor] = []

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Key]:
        epoch = self.epoch
        return ((epoch, rows.tolist()) for rows in self.rows)


def _as_is(batch: Batch) -> Batch:
    return batch


class _Tally:
    """Counts corrupt files as batches arrive; warns, and fails past the allowed fraction."""

    def __init__(self, images: EncodedImages, max_corrupt: float) -> None:
        self.images = images
        self.max_corrupt = max_corrupt
        self.corrupt: dict[int, str] = {}

    def check(self, batch: Batch) -> None:
        for j, reason in batch.corrupt:
            if j in self.corrupt:
                continue
            self.corrupt[j] = reason
            if len(self.corrupt) <= WARN_FILES:
                later = "; later ones are only counted" if len(self.corrupt) == WARN_FILES else ""
                warnings.warn(
                    f"{self.images.name(j)}: cannot decode ({reason}); the next readable image stands in for it{later}",
                    CorruptImageWarning, stacklevel=3,
                )
            if len(self.corrupt) > self.max_corrupt * len(self.images):
                raise DataError(
                    f"{len(self.corrupt)} of {len(self.images)} images cannot be decoded, more than "
                    f"the fraction max_corrupt={self.max_corrupt:g} allows (this one: {reason})",
                    where=self.images.name(j),
                )
        if batch.lost:
            raise DataError(
                f"cannot be decoded, nor any of the {REPLACEMENT_TRIES - 1} samples after it",
                where=self.images.name(batch.lost[0]),
            )


class StreamingSource:
    """Training batches decoded from encoded images in `num_workers` worker processes.

    `batch_size` is the global batch; this process gets `batch_size // world_size` rows of
    each. Workers persist across epochs. `pin_memory` (default: when CUDA is available)
    puts batches in page-locked memory for an asynchronous copy to the GPU. `corrupt`
    holds the corrupt files found so far (sample index -> reason). `decode_device`: decode
    the JPEGs there, in the main process, instead of in the workers (batches then arrive
    on that device).
    """

    def __init__(
        self, images: EncodedImages, *, batch_size: int, size: int, channels: int = 3,
        crop: CropSpec = CropSpec(), seed: int = 0, rank: int = 0, world_size: int = 1,
        num_workers: int = 2, prefetch_factor: int = 2, pin_memory: bool | None = None,
        max_corrupt: float = 0.01, decode_device: torch.device | str | None = None,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not one of {world_size} process(es)")
        if batch_size < 1 or batch_size % world_size:
            raise DataError(f"batch size {batch_size} does not divide among {world_size} process(es)", where="train.batch_size")
        if len(images) < batch_size:
            raise DataError(f"{len(images)} images make no batch of {batch_size}", where="train.batch_size")
        self.images = images
        self.batch_size = batch_size
        self.local_batch = batch_size // world_size
        self.rank = rank
        self.steps_per_epoch = len(images) // batch_size
        self.decode_device = _decode_device(decode_device)
        self._decoder = _Decoder(images, channels, size, crop, seed, 1.0, defer_jpeg=self.decode_device is not None)
        self._keys = _Keys()
        self._tally = _Tally(images, max_corrupt)
        self._loader_options = dict(
            num_workers=num_workers, pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
            persistent_workers=num_workers > 0, prefetch_factor=prefetch_factor if num_workers > 0 else None,
        )
        self._loader: DataLoader[Batch] | None = None
        self._pass: Generator[Batch, None, None] | None = None

    def __len__(self) -> int:
        """The samples an epoch's permutation orders (the whole split, every process)."""
        return len(self.images)

    @property
    def corrupt(self) -> dict[int, str]:
        return dict(self._tally.corrupt)

    def epoch(self, epoch: int, perm: Tensor, start_step: int = 0) -> Iterator[Batch]:
        """This process's batches of epoch `epoch` over `perm`, from step `start_step` on.

        One pass at a time: a new call ends the previous pass's iterator.
        """
        if perm.ndim != 1 or perm.shape[0] != len(self.images):
            raise ValueError(f"perm must be a permutation of {len(self.images)} ids, got shape {tuple(perm.shape)}")
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f"start step {start_step} is outside 0..{self.steps_per_epoch}")
        order = perm.detach().to("cpu", torch.int64)
        b, first = self.local_batch, self.rank * self.local_batch
        self._keys.epoch = epoch
        self._keys.rows = [
            order[i * self.batch_size + first : i * self.batch_size + first + b] for i in range(start_step, self.steps_per_epoch)
        ]
        if self._loader is None:
            self._loader = DataLoader(self._decoder, batch_size=None, sampler=self._keys, collate_fn=_as_is, **self._loader_options)  # type: ignore[arg-type]  # the decoder yields whole batches (batch_size=None); torch's stubs expect a Dataset of samples
        self._end_pass()
        self._pass = _checked(iter(self._loader), self._decoder, self._tally, self.decode_device, epoch)
        return self._pass

    def _end_pass(self) -> None:
        if self._pass is not None:
            self._pass.close()  # lets go of the loader's iterator, even if its holder keeps the generator
            self._pass = None

    def close(self) -> None:
        """Stop the worker processes (they also stop when the source is garbage-collected).

        PyTorch shuts a loader's workers down when its iterator is garbage-collected (its
        documented behaviour; the persistent iterator lives in the loader): the pass handed
        out is closed, the loader dropped, and with the last reference the workers go.
        """
        self._end_pass()
        self._loader = None

    def __enter__(self) -> StreamingSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _checked(
    batches: Iterator[Batch], decoder: _Decoder, tally: _Tally, device: torch.device | None, epoch: int,
) -> Generator[Batch, None, None]:
    """A pass's batches, decoded on `device` where asked, each checked for corrupt images.
    A function, not a method: the source holds the pass, and the pass does not hold the
    source, so dropping a source frees its workers without waiting for a garbage collection."""
    for batch in batches:
        if device is not None:
            batch = decoder.complete(batch, epoch, device)
        tally.check(batch)
        yield batch


def stream_eval(
    images: EncodedImages, *, size: int, batch_size: int, channels: int = 3, fraction: float = 0.875,
    rows: slice | None = None, num_workers: int = 2, pin_memory: bool | None = None,
    max_corrupt: float = 0.01, decode_device: torch.device | str | None = None,
) -> Iterator[Batch]:
    """The evaluation input of samples `rows` (default all), in order, in batches.

    Each image's central square of side `fraction` x its shorter side, resized to
    size x size (as resizing the shorter side to size / fraction and centre-cropping), no
    randomness. Pass `cmp.distributed.shard(len(images), processes)` as `rows` for this
    process's share of a distributed evaluation. `decode_device`: decode the JPEGs there
    (batches then arrive on it), as `StreamingSource`.
    """
    device = _decode_device(decode_device)
    start, stop, _ = (rows or slice(None)).indices(len(images))
    keys = _Keys()
    keys.rows = [torch.arange(s, min(stop, s + batch_size)) for s in range(start, stop, batch_size)]
    decoder = _Decoder(images, channels, size, None, 0, fraction, defer_jpeg=device is not None)
    loader = DataLoader(
        decoder, batch_size=None, sampler=keys, collate_fn=_as_is, num_workers=num_workers,  # type: ignore[arg-type]  # as above: batches, not samples
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
    )
    tally = _Tally(images, max_corrupt)
    for batch in loader:
        if device is not None:
            batch = decoder.complete(batch, 0, device)
        tally.check(batch)
        yield batch


def _decode_device(device: torch.device | str | None) -> torch.device | None:
    if device is None:
        return None
    if not device_decoding_available():
        raise DataError("this torchvision cannot decode JPEGs on a device (no torchvision.io.decode_jpeg): "
                        "decode in the workers", where="data.params.decode_on")
    return torch.device(device)


STATISTICS_SAMPLE = 256
"""Images decoded to estimate a data set's per-channel mean and std."""


def estimate_statistics(
    images: EncodedImages, *, channels: int, size: int, fraction: float = 0.875,
    count: int = STATISTICS_SAMPLE, seed: int = 0,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) in [0, 1] of the evaluation crops of a fixed, seeded sample
    of `count` images (all of them when fewer): the same numbers at every start, in every
    process, at the cost of decoding a few hundred images in this one. Corrupt images are
    left out here, not replaced by a stand-in (which would count that one twice); training
    names them."""
    n = len(images)
    rows = np.arange(n) if n <= count else np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))
    sums = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    pixels = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptImageWarning)
        for batch in stream_eval(Subset(images, rows), size=size, batch_size=64, channels=channels, fraction=fraction,
                                 num_workers=0, pin_memory=False, max_corrupt=1.0):
            unreadable = [*batch.lost, *(j for j, _ in batch.corrupt)]
            keep = ~torch.isin(batch.ids, torch.tensor(unreadable, dtype=torch.int64))
            x = batch.images[keep].to(torch.float64) / 255.0
            sums += x.sum(dim=(0, 2, 3))
            squares += (x * x).sum(dim=(0, 2, 3))
            pixels += x.shape[0] * size * size
    mean = sums / max(1, pixels)
    std = (squares / max(1, pixels) - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
