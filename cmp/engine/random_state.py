"""The random state a checkpoint saves and a resumed run restores, so it continues as the
uninterrupted run would have.

Shared by every process: the generator that draws the epochs' permutations and torch's
global CPU (and the device's CUDA) state. Each process's own: its augmentation generator and
its global states, gathered into `rank_states` when several processes train, so each process
resumes with its own streams.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from cmp.distributed import Processes, all_gather_objects


def random_state(
    generator: torch.Generator, augment_generator: torch.Generator, device: torch.device, processes: Processes
) -> dict[str, Any]:
    """The checkpoint's random-state entries: `generator`, `torch_rng`, `cuda_rng` on a GPU,
    `rank_states` (every process's own) with several processes. Every process must call it."""
    state: dict[str, Any] = {"generator": generator.get_state(), "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available() and device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    if processes.distributed:
        state["rank_states"] = all_gather_objects(_own_random_state(augment_generator, device), processes)
    return state


def restore_random_state(
    state: dict[str, Any], generator: torch.Generator, augment_generator: torch.Generator,
    device: torch.device, processes: Processes,
) -> None:
    """Set what `random_state` saved; a process's own states, when saved, last."""
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    if "rank_states" in state:
        own = state["rank_states"][processes.rank]
        augment_generator.set_state(own["augment"])
        torch.set_rng_state(own["torch_rng"])
        if "cuda_rng" in own and device.type == "cuda":
            torch.cuda.set_rng_state(own["cuda_rng"], device)


def _own_random_state(augment_generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
    own = {"augment": augment_generator.get_state(), "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available() and device.type == "cuda":
        own["cuda_rng"] = torch.cuda.get_rng_state(device)
    return own
