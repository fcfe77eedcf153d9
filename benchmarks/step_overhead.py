"""Training-step time of cmp's engine against a bare PyTorch loop: same model, batch, loss.

Both sides are built from the same recipe with the same seed. cmp's side is the real
`Trainer` (hooks, TensorBoard and progress plugins, logging every `log_every` steps); the
bare side is the loop one would write by hand for the method. Rounds alternate between
the two so that drifts of the machine hit both; the ratio is of the median step times.

    python -m benchmarks.step_overhead --recipe recipes/simclr.yaml --method simclr
    python -m benchmarks.step_overhead --recipe recipes/vicreg.yaml --method vicreg
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.machine import describe_machine
from cmp.api.loader import load_plugins
from cmp.api.results import RunInfo, RunResult
from cmp.config.cells import Cell, resolve
from cmp.config.recipe import load_recipe
from cmp.engine.build import Model, build_model
from cmp.engine.runner import Runner
from cmp.engine.trainer import TrainConfig, Trainer

BareStep = Callable[[torch.Tensor], None]


def simclr_loss(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """The usual hand-written SimCLR loss: 2N x 2N similarities, diagonal out, cross-entropy."""
    z = F.normalize(z.float(), dim=1)
    n = z.shape[0] // 2
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


def _optimise(loss: torch.Tensor, opt: torch.optim.Optimizer, sched: Any) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if sched is not None:
        sched.step()


def bare_simclr(model: Model, cell: Cell, generator: torch.Generator, autocast: Any) -> BareStep:
    online, aug, opt, sched = model.learner.online, model.augmentation, model.optimizer, model.schedule
    temperature = cell.parts["loss"].params["temperature"]

    def step(x: torch.Tensor) -> None:
        with autocast():
            v1, v2 = aug(x, generator)
            if cell.train.channels_last:
                v1, v2 = (v.contiguous(memory_format=torch.channels_last) for v in (v1, v2))
            loss = simclr_loss(online(torch.cat([v1, v2])), temperature)
        _optimise(loss, opt, sched)

    return step


def _views(aug: Any, x: torch.Tensor, generator: torch.Generator, cell: Cell) -> list[torch.Tensor]:
    views = aug(x, generator)
    if cell.train.channels_last:
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    return views


def _ema(target: torch.nn.Module, online: torch.nn.Module, m: float) -> None:
    with torch.no_grad():
        for t, o in zip(target.parameters(), online.parameters()):
            t.mul_(m).add_(o.detach(), alpha=1 - m)


def bare_moco(model: Model, cell: Cell, generator: torch.Generator, autocast: Any) -> BareStep:
    """MoCo v2 as usually hand-written: key encoder under shuffled BN, queue, InfoNCE."""
    online, aug, opt, sched = model.learner.online, model.augmentation, model.optimizer, model.schedule
    key_net = copy.deepcopy(online).requires_grad_(False)
    temperature = cell.parts["loss"].params["temperature"]
    target = cell.parts["target"].params
    m, groups = target.get("momentum", 0.99), target.get("bn_shuffle_groups", 1)
    size = cell.parts["negative_source"].params.get("size", 4096)
    queue: torch.Tensor | None = None  # filled with random unit keys once the key size is known
    pointer = 0

    def step(x: torch.Tensor) -> None:
        nonlocal queue, pointer
        with autocast():
            v1, v2 = _views(aug, x, generator, cell)
            q = F.normalize(online(v1).float(), dim=1)
            with torch.no_grad():
                order = torch.randperm(v2.shape[0])
                k = torch.cat([key_net(c) for c in v2[order].chunk(groups)])[torch.argsort(order)]
                k = F.normalize(k.float(), dim=1)
                if queue is None:
                    queue = F.normalize(torch.randn(size, k.shape[1]), dim=1)
            logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / temperature
            loss = F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long))
        _optimise(loss, opt, sched)
        _ema(key_net, online, m)
        idx = (torch.arange(k.shape[0]) + pointer) % size
        queue[idx] = k
        pointer = (pointer + k.shape[0]) % size

    return step


def bare_byol(model: Model, cell: Cell, generator: torch.Generator, autocast: Any) -> BareStep:
    """BYOL as usually hand-written: predictor, EMA target, symmetrised 2 - 2 cos."""
    online, aug, opt, sched = model.learner.online, model.augmentation, model.optimizer, model.schedule
    predictor = model.learner.predictor
    assert predictor is not None, "BYOL needs a predictor"
    target_net = copy.deepcopy(online).requires_grad_(False)
    m = cell.parts["target"].params.get("momentum", 0.99)

    def regression(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return (2 - 2 * F.cosine_similarity(p.float(), z.float(), dim=1)).mean()

    def step(x: torch.Tensor) -> None:
        with autocast():
            v1, v2 = _views(aug, x, generator, cell)
            p1, p2 = predictor(online(v1)), predictor(online(v2))
            with torch.no_grad():
                t1, t2 = target_net(v1), target_net(v2)
            loss = (regression(p1, t2) + regression(p2, t1)) / 2
        _optimise(loss, opt, sched)
        _ema(target_net, online, m)

    return step


def bare_simsiam(model: Model, cell: Cell, generator: torch.Generator, autocast: Any) -> BareStep:
    """SimSiam as the paper's Algorithm 1: predictor, stop-gradient, symmetrised negative cosine."""
    online, aug, opt, sched = model.learner.online, model.augmentation, model.optimizer, model.schedule
    predictor = model.learner.predictor
    assert predictor is not None, "SimSiam needs a predictor"

    def D(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # noqa: N802 - the paper's name
        return -F.cosine_similarity(p.float(), z.detach().float(), dim=1).mean()

    def step(x: torch.Tensor) -> None:
        with autocast():
            v1, v2 = _views(aug, x, generator, cell)
            z1, z2 = online(v1), online(v2)
            p1, p2 = predictor(z1), predictor(z2)
            loss = D(p1, z2) / 2 + D(p2, z1) / 2
        _optimise(loss, opt, sched)

    return step


def _off_diagonal_squares(c: torch.Tensor) -> torch.Tensor:
    return c.pow(2).sum() - torch.diagonal(c).pow(2).sum()


def bare_barlow_twins(model: Model, cell: Cell, generator: torch.Generator, autocast: Any) -> BareStep:
    """Barlow Twins as its official code: columns batch-normalised, cross-correlation to identity."""
    online, aug, opt, sched = model.learner.online, model.augmentation, model.optimizer, model.schedule
    lambd = cell.parts["loss"].params.get("off_diagonal_weight", 5e-3)

    def step(x: torch.Tensor) -> None:
        with autocast():
            v1, v2 = _views(aug, x, generator, cell)
            z1, z2 = online(v1).float(), online(v2).float()
            n1 = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + 1e-5)
            n2 = (z2 - z2.mean(0)) / torch.sqrt(z2.var(0, unbiased=False) + 1e-5)
            c = n1.T @ n2 / z1.shape[0]
            loss = (torch.diagonal(c) - 1).pow(2).sum() + lambd * _off_diagonal_squares(c)
        _optimise(loss, opt, sched)

    return step


def bare_vicreg(model: Model, cell: Cell, generator: torch.Generator, autocast: Any) -> BareStep:
    """VICReg as its official code's forward: invariance, halved variance hinge, covariance."""
    online, aug, opt, sched = model.learner.online, model.augmentation, model.optimizer, model.schedule
    weights = cell.parts["loss"].params
    lam, mu, nu = (weights.get(k, 25.0 if k != "covariance_weight" else 1.0)
                   for k in ("invariance_weight", "variance_weight", "covariance_weight"))

    def step(x: torch.Tensor) -> None:
        with autocast():
            v1, v2 = _views(aug, x, generator, cell)
            a, b = online(v1).float(), online(v2).float()
            invariance = F.mse_loss(a, b)
            a, b = a - a.mean(0), b - b.mean(0)
            variance = (F.relu(1 - torch.sqrt(a.var(0) + 1e-4)).mean() + F.relu(1 - torch.sqrt(b.var(0) + 1e-4)).mean()) / 2
            n, d = a.shape
            covariance = (_off_diagonal_squares(a.T @ a / (n - 1)) + _off_diagonal_squares(b.T @ b / (n - 1))) / d
            loss = lam * invariance + mu * variance + nu * covariance
        _optimise(loss, opt, sched)

    return step


def bare_moco_v3(model: Model, cell: Cell, generator: torch.Generator, autocast: Any) -> BareStep:
    """MoCo v3 as its Algorithm 1: predictor, momentum encoder on a cosine schedule, ctr over the other view's keys."""
    online, aug, opt, sched = model.learner.online, model.augmentation, model.optimizer, model.schedule
    predictor = model.learner.predictor
    assert predictor is not None, "MoCo v3 needs a predictor"
    key_net = copy.deepcopy(online).requires_grad_(False)
    tau = cell.parts["loss"].params["temperature"]
    m = cell.parts["target"].params.get("momentum", 0.99)  # the cosine schedule's m costs the same

    def ctr(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        q, k = F.normalize(q.float(), dim=1), F.normalize(k.float(), dim=1)
        return F.cross_entropy(q @ k.T / tau, torch.arange(q.shape[0], device=q.device)) * 2 * tau

    def step(x: torch.Tensor) -> None:
        with autocast():
            v1, v2 = _views(aug, x, generator, cell)
            q1, q2 = predictor(online(v1)), predictor(online(v2))
            with torch.no_grad():
                k1, k2 = key_net(v1), key_net(v2)
            loss = (ctr(q1, k2) + ctr(q2, k1)) / 2  # cmp's mean over the two pairs
        _optimise(loss, opt, sched)
        _ema(key_net, online, m)

    return step


def bare_nnclr(model: Model, cell: Cell, generator: torch.Generator, autocast: Any) -> BareStep:
    """NNCLR as usually hand-written (solo-learn's): a queue of z, nearest neighbours, eq. 2 both ways."""
    online, aug, opt, sched = model.learner.online, model.augmentation, model.optimizer, model.schedule
    predictor = model.learner.predictor
    assert predictor is not None, "NNCLR needs a predictor"
    tau = cell.parts["loss"].params["temperature"]
    size = cell.parts["target"].params["size"]
    support: torch.Tensor | None = None
    pointer = filled = 0

    def nearest(z: torch.Tensor) -> torch.Tensor:
        if support is None or filled == 0:
            return z.detach()
        stored = support[:filled]
        return stored[(F.normalize(z.detach().float(), dim=1) @ stored.T).argmax(dim=1)]

    def term(nn_z: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        logits = F.normalize(nn_z.float(), dim=1) @ F.normalize(p.float(), dim=1).T / tau
        return F.cross_entropy(logits, torch.arange(p.shape[0], device=p.device))

    def step(x: torch.Tensor) -> None:
        nonlocal support, pointer, filled
        with autocast():
            v1, v2 = _views(aug, x, generator, cell)
            z1, z2 = online(torch.cat([v1, v2])).chunk(2)
            p1, p2 = predictor(torch.cat([z1, z2])).chunk(2)
            with torch.no_grad():
                nn1, nn2 = nearest(z1), nearest(z2)
            loss = (term(nn1, p2) + term(nn2, p1)) / 2
        _optimise(loss, opt, sched)
        with torch.no_grad():
            rows = F.normalize(z1.detach().float(), dim=1)
            if support is None:
                support = torch.zeros(size, rows.shape[1], device=rows.device)
            idx = (torch.arange(rows.shape[0], device=rows.device) + pointer) % size
            support[idx] = rows
            pointer, filled = (pointer + rows.shape[0]) % size, min(size, filled + rows.shape[0])

    return step


BARE_LOOPS: dict[str, Callable[..., BareStep]] = {
    "simclr": bare_simclr, "moco": bare_moco, "byol": bare_byol,
    "simsiam": bare_simsiam, "barlow_twins": bare_barlow_twins, "vicreg": bare_vicreg,
    "moco_v3": bare_moco_v3, "nnclr": bare_nnclr,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=Path("recipes/simclr.yaml"))
    parser.add_argument("--method", default="simclr", choices=sorted(BARE_LOOPS))
    parser.add_argument("--steps", type=int, default=30, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per side")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    plugins = load_plugins(plugins="none")
    recipe = load_recipe(args.recipe, args.overrides)
    (cell,) = [c for c in resolve(recipe, plugins.registry) if c.method == args.method]
    out = Path(tempfile.mkdtemp(prefix="cmp-bench-"))
    runner = Runner(plugins, out)
    data = runner.data_for(cell.data)
    info = data.info()
    device = torch.device("cpu")
    batch = cell.train.batch_size
    images = data.train_images[: batch * args.steps].to(device)
    precision = cell.train.precision
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()

    cmp_model = build_model(cell, plugins.registry, info, args.steps, device)
    bare_model = build_model(cell, plugins.registry, info, args.steps, device)
    run = RunInfo("bench", recipe.name, cell.method, cell.key(), out / "bench", cell.config(), device)
    cmp_gen = torch.Generator().manual_seed(0)
    bare_gen = torch.Generator().manual_seed(0)
    bare_step = BARE_LOOPS[args.method](bare_model, cell, bare_gen, autocast)
    plugins.hook.cmp_run_start(run=run)

    def cmp_round() -> float:
        trainer = Trainer(
            cmp_model.learner, cmp_model.augmentation, images, cmp_model.optimizer, cmp_model.schedule, cmp_gen,
            TrainConfig(epochs=1, batch_size=batch, log_every=cell.train.log_every, precision=precision,
                        channels_last=cell.train.channels_last, collapse_std=cell.train.collapse_std),
            run, plugins.hook,
        )
        started = time.perf_counter()
        trainer.fit()
        return (time.perf_counter() - started) / args.steps

    def bare_round() -> float:
        perm = torch.randperm(images.shape[0], generator=bare_gen)
        started = time.perf_counter()
        for i in range(args.steps):
            bare_step(images[perm[i * batch : (i + 1) * batch]])
        return (time.perf_counter() - started) / args.steps

    cmp_round(), bare_round()  # warm-up
    cmp_times, bare_times = [], []
    for _ in range(args.rounds):
        cmp_times.append(cmp_round())
        bare_times.append(bare_round())
    plugins.hook.cmp_run_end(run=run, result=RunResult(recipe=recipe.name, method=cell.method, cell="bench", key=cell.key(), status="ok"))
    cmp_ms, bare_ms = statistics.median(cmp_times) * 1000, statistics.median(bare_times) * 1000
    print(describe_machine())
    print(f"recipe {args.recipe}, method {args.method}, batch {batch}, precision {precision}, "
          f"{args.rounds} rounds x {args.steps} steps per side")
    print(f"cmp engine : {cmp_ms:8.2f} ms/step (rounds: {', '.join(f'{t * 1000:.1f}' for t in cmp_times)})")
    print(f"bare loop  : {bare_ms:8.2f} ms/step (rounds: {', '.join(f'{t * 1000:.1f}' for t in bare_times)})")
    print(f"ratio cmp / bare = {cmp_ms / bare_ms:.3f}  (goal <= 1.03)")


if __name__ == "__main__":
    main()
