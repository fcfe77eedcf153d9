"""The `cmp` command: `cmp run RECIPE`, `cmp eval ENCODER`, `cmp report RUNS`, `cmp plugins`: parsing and dispatch.

What each command does is in `cmp.commands` (`run`, `evaluate`, `dry_run`, `report`, `report_folders`,
`plugin_listing`); this module turns the command line into their arguments, loads the
plugins, and turns what goes wrong into an exit code.

Exit codes: 0 success, 1 a run failed, 2 bad input (recipe, data, plugin, checkpoint),
130 interrupted, 141 the reader of the output went away (`cmp plugins --json | head`:
a quiet stop, as other Unix tools make on SIGPIPE). Bad input is one line on stderr,
`cmp: error: <where>: <what>`, never a traceback.

Reports: `reports/NAME/` is the report of the recipe as written; a run whose `--set`
overrides change the resolved configuration reports into `reports/NAME-<hash>/`
(`cmp.commands.report_folders`); `--reports` / `--out` choose the folder outright.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from cmp import __version__
from cmp.api.loader import load_plugins
from cmp.api.slots import SLOTS
from cmp.commands.evaluate import EvalRequest, eval_command
from cmp.commands.plugin_listing import list_plugins
from cmp.commands.report import report_command
from cmp.commands.run import RunRequest, run_command
from cmp.config.recipe import Override
from cmp.errors import CmpError, CmpWarning


def _parser() -> argparse.ArgumentParser:
    """The command line: global plugin options, then `run`, `report` or `plugins` and their flags."""
    parser = argparse.ArgumentParser(prog="cmp", description="Compare contrastive self-supervised methods.")
    parser.add_argument("--version", action="version", version=f"cmp {__version__}")
    parser.add_argument(
        "--plugins", metavar="NAMES",
        help="third-party plugins (entry-point or distribution names, comma separated) to load; "
        "'none' loads only cmp's own (default: all installed; env CMP_PLUGINS)",
    )
    parser.add_argument(
        "-p", "--plugin-module", action="append", default=[], metavar="MODULE",
        help="also load an importable module as a plugin (repeatable)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train, evaluate and compare every method a recipe names")
    run.add_argument("recipe", type=Path, help="recipe YAML file")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a recipe key, e.g. --set train.epochs=1 (repeatable)")
    run.add_argument("--out", type=Path, default=Path("runs"), help="runs directory (default: runs/)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="override train.device")
    run.add_argument("--jobs", type=int, default=1, metavar="N", help="run N cells at once in worker processes")
    run.add_argument("--executor", metavar="NAME", help="how cells run: local (default) or ray (cmp plugins --slot executors)")
    run.add_argument("--address", help="with --executor ray: the cluster to join (ray://HOST:10001, auto); "
                     "default: start a local one")
    run.add_argument("--cpus-per-cell", type=float, metavar="N", help="with --executor ray: CPUs each cell asks for")
    run.add_argument("--gpus-per-cell", type=float, metavar="N", help="with --executor ray: GPUs each cell asks for")
    run.add_argument("--nproc", type=int, default=1, metavar="N",
                     help="train each cell on N processes of this machine (one per GPU; torch.distributed, DDP); "
                     "for several machines start `torchrun ... -m cmp run` on each")
    run.add_argument("--dry-run", action="store_true",
                     help="the plan: every cell and baseline, cached or not, whether the data is here, the time "
                     "it should take, and where the methods differ; train nothing")
    run.add_argument("--reports", type=Path,
                     help="reports directory: the report goes to REPORTS/NAME/ (default: reports/NAME/, or "
                     "reports/NAME-<hash>/ when --set changes the configuration)")

    _eval_parser(sub)

    report = sub.add_parser("report", help="write the comparison report of finished runs")
    report.add_argument("runs", type=Path, help="a recipe's runs directory (runs/NAME) or the runs root")
    report.add_argument("--out", type=Path,
                        help="reports directory: OUT/NAME/ (default: the folder under reports/ that `cmp run` "
                        "chose; never one holding the report of other cells)")

    plugins = sub.add_parser("plugins", help="list every component per slot with its parameters")
    plugins.add_argument("--slot", choices=sorted(SLOTS), help="only this slot")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    return parser



def _eval_parser(sub: Any) -> None:
    """`cmp eval ENCODER --data DATASET` and its flags."""
    evaluate = sub.add_parser(
        "eval", help="evaluate an encoder as built and loaded (weights trained elsewhere), without training it",
        description="Evaluate one encoder with cmp's protocol (kNN, linear probe, diagnostics, baselines): writes "
        "RUNS/NAME/recipe.yaml (train.epochs: 0) and runs it as `cmp run` would.",
    )
    evaluate.add_argument("encoder", help="an encoder, NAME or NAME:ARCH: torchvision:resnet18, timm:resnet50, convnet")
    evaluate.add_argument("--data", required=True, metavar="DATASET", help="the data set (digits, fashion_mnist, cifar10...)")
    evaluate.add_argument("--weights", type=Path, metavar="FILE", help="a local weights file: a state_dict, a "
                          "checkpoint (Lightning's, a cmp run's checkpoint.pt...)")
    evaluate.add_argument("--weights-key", metavar="KEY", help="where in the file the weights sit (default: found)")
    evaluate.add_argument("--weights-prefix", metavar="PREFIX", help="prefix to strip from their names, e.g. "
                          "backbone. (default: found)")
    evaluate.add_argument("--param", dest="params", action="append", default=[], metavar="KEY=VALUE",
                          help="another encoder parameter, e.g. --param image_size=224 (repeatable)")
    evaluate.add_argument("--name", help="the recipe's name: runs/NAME, reports/NAME (default: eval_<weights file>)")
    evaluate.add_argument("--data-root", metavar="DIR", help="where the data set lives")
    evaluate.add_argument("--subset", type=int, metavar="N", help="use N training images")
    evaluate.add_argument("--test-subset", type=int, metavar="N", help="use N test images")
    evaluate.add_argument("--seed", dest="seeds", type=int, nargs="+", default=[0], metavar="SEED",
                          help="seed(s) of the encoder's random initialisation and the probes (default 0); with "
                          "several, {seed} in --weights names each seed's file: --weights 'run-{seed}.pt' --seed 0 1 2")
    evaluate.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="train.device")
    evaluate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="override a key of the generated recipe, e.g. --set eval.knn.k=20 (repeatable)")
    evaluate.add_argument("--out", type=Path, default=Path("runs"), help="runs directory (default: runs/)")
    evaluate.add_argument("--reports", type=Path, help="reports directory (default: reports/)")


_plain_warning = warnings.formatwarning


def _format_warning(message: Any, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> str:
    """cmp's own warnings (`CmpWarning`: a corrupt image replaced) as one line,
    `cmp: warning: ...`, without Python's file, line and source; others as Python shows them."""
    if issubclass(category, CmpWarning):
        return f"cmp: warning: {message}\n"
    return _plain_warning(message, category, filename, lineno, line)


def main(argv: list[str] | None = None) -> int:
    """`cmp ARGS`: parse, load the plugins, run the command; its exit code."""
    warnings.formatwarning = _format_warning
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    try:
        plugins = load_plugins(args.plugins, args.plugin_module)
        for warning in plugins.warnings:
            print(f"cmp: warning: {warning}", file=sys.stderr)
        if args.command == "plugins":
            return list_plugins(plugins, args.slot, args.json)
        if args.command == "report":
            return report_command(plugins, args.runs, args.out)
        if args.command == "eval":
            return eval_command(plugins, eval_request(args, argv))
        return run_command(plugins, run_request(args, argv))
    except CmpError as exc:
        print(f"cmp: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return _closed_pipe()
    except KeyboardInterrupt:
        print("cmp: interrupted; finished cells are kept and the interrupted one resumes from its checkpoint", file=sys.stderr)
        return 130


def _closed_pipe() -> int:
    """The reader of our output went away: stop quietly. Later writes (the interpreter
    flushing stdout at exit) go to /dev/null instead of raising again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            os.dup2(devnull, stream.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (a test's capture): nothing to redirect
        pass
    return 141


def run_request(args: argparse.Namespace, argv: list[str]) -> RunRequest:
    """`cmp run`'s parsed flags as the request the command takes."""
    return RunRequest(
        recipe=args.recipe, flag_overrides=_flag_overrides(args), set_overrides=list(args.overrides), out=args.out,
        jobs=args.jobs, nproc=args.nproc, dry_run=args.dry_run, reports=args.reports, argv=argv,
        plugin_names=args.plugins, plugin_modules=args.plugin_module,
    )


def eval_request(args: argparse.Namespace, argv: list[str]) -> EvalRequest:
    """`cmp eval`'s parsed flags as the request the command takes."""
    return EvalRequest(
        encoder=args.encoder, data=args.data, weights=args.weights, weights_key=args.weights_key,
        weights_prefix=args.weights_prefix, params=list(args.params), name=args.name, data_root=args.data_root,
        subset=args.subset, test_subset=args.test_subset, seeds=tuple(args.seeds), device=args.device,
        set_overrides=list(args.overrides), out=args.out, reports=args.reports, argv=argv,
        plugin_names=args.plugins, plugin_modules=args.plugin_module,
    )


def _flag_overrides(args: argparse.Namespace) -> list[Override]:
    """Recipe keys set by flags, named as typed so errors name the flag (`--device cuda`)."""
    flags: list[Override] = [(f"train.device={args.device}", f"--device {args.device}")] if args.device else []
    if args.executor:  # another executor starts from its own defaults
        flags.append((f"executor={{name: {args.executor}}}", f"--executor {args.executor}"))
    for flag, key in (("address", "address"), ("cpus_per_cell", "cpus_per_cell"), ("gpus_per_cell", "gpus_per_cell")):
        value = getattr(args, flag)
        if value is not None:
            flags.append((f"executor.params.{key}={value}", f"--{flag.replace('_', '-')} {value}"))
    if args.jobs != 1:
        flags.append((f"executor.params.jobs={args.jobs}", f"--jobs {args.jobs}"))
    return flags
