"""Streaming data: images stay encoded on disk and are decoded per batch in worker processes.

`build_index` (a class-per-folder tree) or `open_shards` (WebDataset tar shards) say
where each image is; `StreamingSource` yields uint8 training batches (B, C, S, S) cropped
from the full-resolution images, for an epoch's permutation, from any step, as one
process's share; `stream_eval` yields the deterministic evaluation input in order;
`Subset` takes seeded rows of either index; `estimate_statistics` measures mean and std
on a fixed sample. Nothing holds the decoded data set: memory does not grow with it.
The engine uses these through `StreamedData` (`plugins/streamed_datasets.py`);
`python -m cmp.streaming.generate` writes a synthetic tree to try them on.
"""

from cmp.streaming.decode import (
    CorruptImage,
    CropSpec,
    center_box,
    crop_generator,
    decode_bytes,
    eval_crop,
    random_crop_box,
    train_crop,
)
from cmp.streaming.index import EncodedImages, ImageIndex, Subset, build_index, read_class_names
from cmp.streaming.loader import Batch, CorruptImageWarning, StreamingSource, estimate_statistics, stream_eval
from cmp.streaming.shards import ShardIndex, open_shards, write_shards

__all__ = [
    "Batch", "CorruptImage", "CorruptImageWarning", "CropSpec", "EncodedImages", "ImageIndex", "ShardIndex",
    "StreamingSource", "Subset", "build_index", "center_box", "crop_generator", "decode_bytes", "estimate_statistics",
    "eval_crop", "open_shards", "random_crop_box", "read_class_names", "stream_eval", "train_crop", "write_shards",
]
