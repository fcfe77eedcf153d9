"""The collapse check: a run whose embeddings stop varying across images is stopped.

With `train.collapse_std` set, the trainer measures at each log step the standard deviation
across the batch of the L2-normalised anchors (averaged over dimensions and processes); a
collapsed representation (every image mapped alike) drives it towards 0, so a run below
the threshold fails at once with the step and value instead of training on to a useless end.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cmp.distributed import Processes, mean_across
from cmp.errors import RunFailed


def embedding_std(anchors: Tensor, processes: Processes) -> float:
    """The per-dimension standard deviation across the batch of the normalised anchors, averaged."""
    normalised = torch.nn.functional.normalize(anchors.detach().float(), dim=1)
    return mean_across(normalised.std(dim=0).mean(), processes).item()


def check_collapse(std: float, threshold: float, step: int) -> None:
    """`RunFailed` when the embedding std is below the threshold."""
    if std < threshold:
        raise RunFailed(f"representation collapsed at step {step}: embedding std {std:.2e} < {threshold:g}")
