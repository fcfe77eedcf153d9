"""DINO's objective (Caron et al. 2021): self-distillation with a centred, sharpened teacher.

The teacher is the `momentum` target (an EMA of the student, momentum 0.996 -> 1 on a
cosine) and sees the global crops only; the student sees every crop. For each pair
(student crop i, teacher crop j != i):

    H(P_t(j), P_s(i)) = - sum_k softmax((t_j - c) / tau_t)_k log softmax(s_i / tau_s)_k,

averaged over images and pairs, as Algorithm 1 and the official `DINOLoss` average (with
`pairs: multicrop`, every crop against each global crop but itself). The centre c is an
EMA (momentum 0.9) of the teacher outputs' mean over the global batch of every process,
updated after each step; the teacher temperature warms up linearly from
`warmup_teacher_temperature` to `teacher_temperature` over the first `warmup` of the
budget (the paper: 0.04 -> 0.07 over 30 of 300 epochs, 0.1; the code's schedule steps
once per epoch, this one at every step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cmp import hookimpl
from cmp.api.contracts import PairBatch, StatefulObjective
from cmp.api.hookspecs import Register
from cmp.api.params import Fraction, Positive, Probability
from cmp.nn import all_reduce_sum


class DINO(StatefulObjective):
    """Cross-entropy of the student's crops against the centred, sharpened teacher's (see the module)."""

    center: Tensor

    def __init__(
        self, dim: int, student_temperature: float, teacher_temperature: float, warmup_teacher_temperature: float,
        warmup: float, center_momentum: float,
    ) -> None:
        super().__init__()
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.warmup_teacher_temperature = warmup_teacher_temperature
        self.warmup = warmup
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, dim))
        self._temperature = warmup_teacher_temperature if warmup > 0 else teacher_temperature

    def teacher_temperature_at(self, progress: float) -> float:
        """Linear from the warm-up temperature at progress 0 to the final one at `warmup`, then constant."""
        if progress >= self.warmup:
            return self.teacher_temperature
        start, end = self.warmup_teacher_temperature, self.teacher_temperature
        return start + (end - start) * progress / self.warmup

    def forward(self, batch: PairBatch, progress: float) -> Tensor:
        if not batch.pairs:
            raise ValueError("DINO needs the batch's pairs (PairBatch.pairs), to know which teacher crop each student crop meets")
        self._temperature = self.teacher_temperature_at(progress)
        with torch.autocast(batch.anchors.device.type, enabled=False):  # softmaxes in full precision
            dtype = self.center.dtype
            teacher = F.softmax((batch.keys.detach().to(dtype) - self.center) / self._temperature, dim=-1)
            student = F.log_softmax(batch.anchors.to(dtype) / self.student_temperature, dim=-1)
            chunks = teacher.chunk(batch.key_views)
            targets = torch.cat([chunks[batch.key_chunk(k)] for k in range(len(batch.pairs))])
            return -(targets * student).sum(dim=-1).mean()

    @torch.no_grad()
    def update(self, batch: PairBatch, progress: float) -> None:
        """The centre moves toward the mean teacher output of this step's global batch (a collective)."""
        keys = batch.keys.detach().to(self.center.dtype)
        total = all_reduce_sum(torch.cat([keys.sum(dim=0), keys.new_tensor([keys.shape[0]])]))
        batch_center = total[:-1] / total[-1]
        self.center.mul_(self.center_momentum).add_(batch_center.unsqueeze(0), alpha=1 - self.center_momentum)

    def stats(self) -> dict[str, float]:
        return {"teacher_temperature": self._temperature}


def dino(
    dim: int, *,
    student_temperature: Positive = 0.1,
    teacher_temperature: Positive = 0.07,
    warmup_teacher_temperature: Positive = 0.04,
    warmup: Fraction = 0.1,
    center_momentum: Probability = 0.9,
) -> DINO:
    """DINO: the student's crops against the centred, sharpened teacher's global crops.

    Defaults are the paper's (section 3.1 and appendix): student temperature 0.1, teacher
    0.04 warming up to 0.07 over the first 30 of 300 epochs (`warmup` 0.1 of the budget),
    centre momentum 0.9.
    """
    return DINO(dim, student_temperature, teacher_temperature, warmup_teacher_temperature, warmup, center_momentum)


@hookimpl
def cmp_register_objectives(register: Register) -> None:
    register("dino", dino)
