"""The `cmp` command: `cmp run RECIPE`, `cmp report RUNS`, `cmp plugins`.

Exit codes: 0 success, 1 a run failed, 2 bad input (recipe, data, plugin, checkpoint),
130 interrupted, 141 the reader of the output went away (`cmp plugins --json | head`:
a quiet stop, as other Unix tools make on SIGPIPE). Bad input is one line on stderr,
`cmp: error: <where>: <what>`, never a traceback.

Reports: `reports/NAME/` is the report of the recipe as written. A run whose `--set`
overrides change the resolved configuration (a short trial: fewer epochs, a subset)
reports into `reports/NAME-<hash of the overrides>/` instead, and `cmp report` never
replaces a report of other cells; `--reports` / `--out` choose the folder outright.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import sys
import textwrap
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cmp import __version__
from cmp.api.loader import Plugins, load_plugins
from cmp.api.results import BaselineResult, RunResult
from cmp.api.registry import Component
from cmp.api.slots import SLOTS
from cmp.config.cells import Cell, method_differences, resolve, resolve_executor
from cmp.config.recipe import Override, Recipe, load_recipe
from cmp.distributed import finish_processes, init_processes, launch, launched
from cmp.engine.baselines import BaselineContext, baseline_key, baseline_specs, compute_baselines
from cmp.engine.build import build, resolve_device
from cmp.engine.data import train_count
from cmp.engine.environment import environment
from cmp.engine.executors import run_cells
from cmp.engine.rundir import (
    MANIFEST, RESULT, estimate_seconds, finished_results, older_results, read_result, write_json,
)
from cmp.engine.runner import Runner
from cmp.errors import CmpError, CmpWarning
from cmp.report import write_report
from cmp.report.summary import format_table, summary_table


DEFAULT_REPORTS = Path("reports")
"""Where reports go unless `--reports` / `--out` says otherwise."""


def _parser() -> argparse.ArgumentParser:
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

    report = sub.add_parser("report", help="write the comparison report of finished runs")
    report.add_argument("runs", type=Path, help="a recipe's runs directory (runs/NAME) or the runs root")
    report.add_argument("--out", type=Path,
                        help="reports directory: OUT/NAME/ (default: the folder under reports/ that `cmp run` "
                        "chose; never one holding the report of other cells)")

    plugins = sub.add_parser("plugins", help="list every component per slot with its parameters")
    plugins.add_argument("--slot", choices=sorted(SLOTS), help="only this slot")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


_plain_warning = warnings.formatwarning


def _format_warning(message: Any, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> str:
    """cmp's own warnings (`CmpWarning`: a corrupt image replaced) as one line,
    `cmp: warning: ...`, without Python's file, line and source; others as Python shows them."""
    if issubclass(category, CmpWarning):
        return f"cmp: warning: {message}\n"
    return _plain_warning(message, category, filename, lineno, line)


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _format_warning  # type: ignore[assignment]
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    args.argv = argv
    args.command_line = "cmp " + shlex.join(argv)
    try:
        plugins = load_plugins(args.plugins, args.plugin_module)
        for warning in plugins.warnings:
            print(f"cmp: warning: {warning}", file=sys.stderr)
        if args.command == "plugins":
            return list_plugins(plugins, args.slot, args.json)
        if args.command == "report":
            return report_command(plugins, args)
        return run_command(plugins, args)
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


def _flag_overrides(args: argparse.Namespace) -> list[Override]:
    """Recipe keys set by flags, named as typed so errors name the flag (`--device cuda`)."""
    flags: list[Override] = [(f"train.device={args.device}", f"--device {args.device}")] if args.device else []
    executor = getattr(args, "executor", None)
    if executor:  # another executor starts from its own defaults
        flags.append((f"executor={{name: {executor}}}", f"--executor {executor}"))
    for flag, key in (("address", "address"), ("cpus_per_cell", "cpus_per_cell"), ("gpus_per_cell", "gpus_per_cell")):
        value = getattr(args, flag, None)
        if value is not None:
            flags.append((f"executor.params.{key}={value}", f"--{flag.replace('_', '-')} {value}"))
    if getattr(args, "jobs", 1) != 1:
        flags.append((f"executor.params.jobs={args.jobs}", f"--jobs {args.jobs}"))
    return flags


def _with_reference(result: BaselineResult, raw: dict[str, Any], plugins: Plugins) -> BaselineResult:
    """A baseline recorded before baselines said whether they are a floor or a ceiling gets
    its component's `reference` (floor when the component is not installed)."""
    if "reference" in raw:
        return result
    try:
        component = plugins.registry.get("baselines", result.baseline).build()
    except Exception:  # not installed, or needs parameters: keep the default
        return result
    reference = "ceiling" if getattr(component, "reference", "floor") == "ceiling" else "floor"
    return result.model_copy(update={"reference": reference})


def run_command(plugins: Plugins, args: argparse.Namespace) -> int:
    overrides: list[Override] = [*_flag_overrides(args), *args.overrides]  # --set is the more specific
    if args.jobs < 1:
        raise CmpError("must be at least 1", where=f"--jobs {args.jobs}")
    if args.nproc < 1:
        raise CmpError("must be at least 1", where=f"--nproc {args.nproc}")
    if args.nproc > 1 and not launched():
        load_recipe(args.recipe, overrides)  # a bad recipe is one error here, not one per worker
        return launch(args.nproc, _without_nproc(args.argv))
    recipe = load_recipe(args.recipe, overrides)
    processes = init_processes(recipe.model.train.device, recipe.model.train.backend)
    if processes.distributed and args.jobs > 1:
        raise CmpError("runs each cell on every process; use --jobs 1 with --nproc or torchrun", where=f"--jobs {args.jobs}")
    cells = resolve(recipe, plugins.registry)
    runner = Runner(plugins, args.out, echo=_stderr, processes=processes)
    if not processes.is_main:
        return _run_as_worker(runner, cells, args)
    recipe_dir = args.out / recipe.name
    older = older_results(recipe_dir)
    if older:
        _stderr(f"cmp: note: {older} result(s) under {recipe_dir} were written by an older cmp; "
                "their format changed, so those cells are computed again")
    started = time.perf_counter()
    report_name = _report_name(recipe, cells, plugins, args)
    report_dir = args.reports / recipe.name if args.reports else DEFAULT_REPORTS / report_name
    if args.dry_run:
        return dry_run(runner, cells, recipe_dir, report_dir)
    if report_dir.name != recipe.name:
        _stderr(f"cmp: note: --set changed the configuration, so the report goes to {report_dir}/, "
                f"not {DEFAULT_REPORTS / recipe.name}/ (the recipe's own; --reports DIR chooses)")
    executor = build(plugins.registry, resolve_executor(recipe, plugins.registry))
    for cell in cells:  # every data set is found and checked before any training starts
        runner.data_for(cell.data)
    _stderr(f"cmp: {recipe.name}: {len(cells)} cell(s) into {recipe_dir}")
    results = run_cells(runner, cells, executor, plugins=args.plugins, modules=args.plugin_module, on_done=_report_cell)
    finish_processes()  # the cells are done on every process; baselines and the report are the main one's
    baselines = compute_baselines(runner, baseline_specs(cells))
    manifest = {
        "recipe": recipe.name, "description": recipe.model.description,
        "command": args.command_line, "runs_dir": str(recipe_dir),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "environment": environment(resolve_device(cells[0].train.device), processes.world_size),
        "cells": [c.key() for c in cells], "baselines": [json.loads(b.to_json()) for b in baselines],
        "overrides": list(args.overrides), "report": report_name,
        "claims": [c.model_dump() for c in recipe.model.claims],
        "wall_time_s": time.perf_counter() - started,
    }
    write_json(recipe_dir / MANIFEST, manifest)
    paths = write_report(recipe.name, results, baselines, report_dir, manifest, recipe.model.description,
                         hooks=plugins.hook)
    print()
    print(summary_table(results, baselines))
    print(f"\nreport: {paths['markdown']} (and report.html, results.csv)\nruns:   {recipe_dir}")
    return 0 if all(r.ok for r in results) else 1


def _run_as_worker(runner: Runner, cells: list, args: argparse.Namespace) -> int:
    """A process other than the main one: train every cell with the others, write nothing."""
    if args.dry_run:
        return 0
    for cell in cells:
        runner.data_for(cell.data)
    results = run_cells(runner, cells)
    finish_processes()
    return 0 if all(r.ok for r in results) else 1


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line a worker runs: the same, less `--nproc N`."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def _report_name(recipe: Recipe, cells: list[Cell], plugins: Plugins, args: argparse.Namespace) -> str:
    """The report's folder under reports/: the recipe's name, or `NAME-<hash of the --set
    overrides>` when they change what is run (a different cell or baseline), so a short
    trial never replaces the report of the recipe as written."""
    if not args.overrides:
        return recipe.name
    try:
        own = resolve(load_recipe(args.recipe, _flag_overrides(args)), plugins.registry)
    except CmpError:  # the recipe is only valid with the overrides: certainly another configuration
        own = []
    if _signature(own) == _signature(cells):
        return recipe.name
    digest = hashlib.sha256("\n".join(sorted(args.overrides)).encode()).hexdigest()[:6]
    return f"{recipe.name}-{digest}"


def _signature(cells: list[Cell]) -> list[str]:
    """What a report shows, as comparable text: each cell's key and its baselines."""
    return sorted(json.dumps([c.key(), [b.to_dict() for b in c.baselines]], sort_keys=True) for c in cells)


def dry_run(runner: Runner, cells: list[Cell], recipe_dir: Path, report_dir: Path) -> int:
    """`cmp run --dry-run`: what a run would do, without training or writing anything.

    Every cell and baseline with its plan (cached, train, resume, compute), every data
    set loaded to see that it is here (never downloaded), an estimate of the time from
    the timings of cells that finished before, and per cell the resolved values in which
    the methods differ. Exit code 2 when a data set is missing, else 0.
    """
    images, missing = _check_data(runner, cells)
    timings = finished_results(recipe_dir)
    cell_rows: list[list[str]] = []
    to_do: list[float | None] = []  # the estimated seconds of each cell and baseline not cached
    for cell in cells:
        plan = runner.plan(cell)
        if cell.data.dataset in missing:
            plan += " (data missing)"
        if plan != "cached":
            key = _data_key(cell)
            to_do.append(estimate_seconds(cell, images[key], timings) if key in images else None)
        cell_rows.append([cell.name, cell.key(), plan, "" if plan == "cached" else _duration(to_do[-1])])
    print(format_table(cell_rows, ["cell", "key", "plan", "estimate"]))

    base_rows, base_seconds = _baseline_plan(runner, cells, missing)
    to_do += base_seconds
    if base_rows:
        print()
        print(format_table(base_rows, ["baseline", "key", "plan", "estimate"]))

    differences = method_differences(cells)
    if any(differences):
        print("\nWhere the methods differ, as resolved ((preset 'x'): a value the preset set, kept although "
              "the recipe names that component again):")
        width = max(len(c.name) for c in cells)
        for cell, row in zip(cells, differences):
            print(f"  {cell.name:<{width}}  " + "  ".join(f"{k}={v}" for k, v in row.items()))

    to_train = sum(1 for row in cell_rows if row[2] != "cached")
    to_compute = sum(1 for row in base_rows if row[2] != "cached")
    print(f"\n{len(cells)} cell(s), {to_train} to train; {len(base_rows)} baseline(s), {to_compute} to compute")
    print(_estimate_line(to_do))
    datasets = {cell.data.dataset: images.get(_data_key(cell)) for cell in cells}
    for name, count in datasets.items():
        print(f"data: {name}: " + ("not found here" if name in missing else f"found ({count} training images)"))
    print(f"run directories under {recipe_dir}; report: {report_dir}/")
    for problem in missing.values():
        _stderr(f"cmp: error: {problem}")
    return 2 if missing else 0


def _data_key(cell: Cell) -> str:
    return json.dumps(cell.data.model_dump(), sort_keys=True, default=str)


def _check_data(runner: Runner, cells: list[Cell]) -> tuple[dict[str, int], dict[str, str]]:
    """Load every data set the cells name, without downloading: (training images per data
    section (`_data_key`), missing data set -> the error saying where it was looked for)."""
    images: dict[str, int] = {}
    missing: dict[str, str] = {}
    for cell in cells:
        key = _data_key(cell)
        if key in images or cell.data.dataset in missing:
            continue
        try:
            data = runner.data_for(cell.data.model_copy(update={"download": False}))
            if cell.data.download:  # found here, so loading it as the run would downloads nothing
                data = runner.data_for(cell.data)
        except CmpError as exc:
            problem = str(exc)
            if cell.data.download:
                off = "downloading is off (data.download: false)"
                would = "`cmp run` would try to download it (a dry run never does)"
                problem = problem.replace(off, would) if off in problem else f"{problem}; {would}"
            missing[cell.data.dataset] = problem
            continue
        images[key] = train_count(data)
    return images, missing


def _baseline_plan(runner: Runner, cells: list[Cell], missing: dict[str, str]) -> tuple[list[list[str]], list[float | None]]:
    """One row per distinct baseline (name, key, plan, estimate), and the estimated seconds
    of those not cached (None: nothing like it has finished yet)."""
    rows: list[list[str]] = []
    seconds: list[float | None] = []
    seen: set[tuple[str, str]] = set()
    infos: dict[str, Any] = {}  # the data's statistics, computed once per data set, not once per baseline
    for spec in baseline_specs(cells):
        name = spec.choice.name
        if spec.cell.data.dataset in missing:
            key, plan = "?", "data missing"
        else:
            try:
                context = BaselineContext(runner, spec)
                if _data_key(spec.cell) in infos:
                    context.info = infos[_data_key(spec.cell)]
                infos[_data_key(spec.cell)] = context.info
                key = baseline_key(build(runner.registry, spec.choice), context)
                plan = "cached" if _read_baseline(context.dir / f"{name}-{key}.json") else "compute"
            except Exception as exc:  # a baseline plugin's bug: the run would record it as failed
                key, plan = "?", f"fails: {type(exc).__name__}: {exc}"
        if (name, key) in seen:
            continue
        seen.add((name, key))
        spent = None
        if plan != "cached":
            spent = _baseline_seconds(runner.out_dir / "baselines", name)
            seconds.append(spent)
        rows.append([name, key, plan, "" if plan == "cached" else _duration(spent)])
    return rows, seconds


def _read_baseline(path: Path) -> BaselineResult | None:
    """A finished baseline result at `path`, or None."""
    try:
        result = BaselineResult.from_json(path.read_text())
    except (OSError, ValueError):
        return None
    return result if result.ok else None


def _baseline_seconds(folder: Path, name: str) -> float | None:
    """The median wall time of this baseline's finished results of any configuration, or None."""
    times = sorted(r.wall_time_s for p in folder.glob(f"{name}-*.json") if (r := _read_baseline(p)) is not None)
    return times[len(times) // 2] if times else None


def _duration(seconds: float | None) -> str:
    """`~40 s`, `~12 min`, `~1.5 h`; `?` when there is no estimate."""
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"~{max(1.0, seconds):.0f} s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def _estimate_line(to_do: list[float | None]) -> str:
    """The plan's total time, and what it leaves out."""
    if not to_do:
        return "estimate: nothing to train or compute; everything is cached"
    known = [s for s in to_do if s is not None]
    if not known:
        return "estimate: no estimate (nothing has finished in this runs directory to time it by)"
    text = f"estimate: about {_duration(sum(known)).lstrip('~')}, from the timings of finished cells and baselines"
    if len(known) < len(to_do):
        text += f"; plus {len(to_do) - len(known)} marked ? that nothing finished yet can time"
    return text


def _report_cell(result: RunResult) -> None:
    status = "cached" if result.cached else result.status
    _stderr(f"cmp: {result.cell}: {status}" + (f" ({result.reason})" if result.reason else ""))


def report_command(plugins: Plugins, args: argparse.Namespace) -> int:
    """`cmp report RUNS`: one report per recipe found under RUNS."""
    recipe_dirs = _recipe_dirs(args.runs)
    if not recipe_dirs:
        raise CmpError("holds no finished runs (no */result.json)", where=str(args.runs))
    for recipe_dir in recipe_dirs:
        manifest = json.loads((recipe_dir / MANIFEST).read_text()) if (recipe_dir / MANIFEST).is_file() else {}
        keys = set(manifest.get("cells", []))
        results = []
        for path in sorted(recipe_dir.glob(f"*/{RESULT}")):
            result = read_result(path)
            if result is None:
                raise CmpError("not a cmp result (or of an unknown format)", where=str(path))
            if not keys or result.key in keys:
                results.append(result)
        name = manifest.get("recipe", recipe_dir.name)
        baselines = [_with_reference(BaselineResult.model_validate(b), b, plugins) for b in manifest.get("baselines", [])]
        out_dir = args.out / name if args.out else _report_dir_for(name, manifest, results)
        paths = write_report(name, results, baselines, out_dir, manifest or None, manifest.get("description"),
                             hooks=plugins.hook)
        print(f"report: {paths['markdown']} ({len(results)} cells)")
    return 0


def _report_dir_for(name: str, manifest: dict[str, Any], results: list[RunResult]) -> Path:
    """Where `cmp report` writes without `--out`: the folder `cmp run` chose (reports/NAME, or
    reports/NAME-<hash> after --set), unless a report of other cells is there already; then
    reports/NAME-<hash of these cells>, so rebuilding never replaces another configuration's report."""
    folder = DEFAULT_REPORTS / manifest.get("report", name)
    keys = sorted(r.key for r in results)
    there = _reported_keys(folder)
    if there is None or there == keys:
        return folder
    target = DEFAULT_REPORTS / f"{name}-{hashlib.sha256(' '.join(keys).encode()).hexdigest()[:6]}"
    _stderr(f"cmp: note: {folder}/ holds the report of other cells; this one goes to {target}/ (--out DIR chooses)")
    return target


def _reported_keys(folder: Path) -> list[str] | None:
    """The cell keys of the report in `folder` (its results.json), or None when there is none."""
    try:
        cells = json.loads((folder / "results.json").read_text()).get("cells", [])
    except (OSError, ValueError, AttributeError):
        return None
    return sorted(str(c.get("key")) for c in cells if isinstance(c, dict))


def _recipe_dirs(runs: Path) -> list[Path]:
    """`runs` itself when it is one recipe's directory, else its recipe sub-directories."""
    if not runs.is_dir():
        return []
    if (runs / MANIFEST).is_file() or any(runs.glob(f"*/{RESULT}")):
        return [runs]
    return sorted(d for d in runs.iterdir() if d.is_dir() and any(d.glob(f"*/{RESULT}")))


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def plugin_listing(plugins: Plugins, slot: str | None = None) -> dict[str, Any]:
    """Every component per slot, with parameters and provider, as plain data."""
    slots = [slot] if slot else list(SLOTS)
    listing: dict[str, Any] = {
        "plugins": [
            {"name": p.plugin, "distribution": p.distribution, "version": p.version}
            for p in plugins.providers.values()
        ],
        "warnings": list(plugins.warnings),
        "slots": {},
    }
    for name in slots:
        entries = []
        for component in plugins.registry.components(name):
            entry: dict[str, Any] = {
                "name": component.name,
                "description": describe(component),
                "plugin": component.provider.plugin,
                "distribution": component.provider.distribution,
                "version": component.provider.version,
                "params": [p.describe() for p in component.schema.params] if component.schema else [],
            }
            if component.meta:
                entry["meta"] = json.loads(json.dumps(component.meta, default=_plain_meta))
            if SLOTS[name].kind == "preset":
                entry["parts"] = json.loads(json.dumps(dict(component.factory.parts), default=str))
            entries.append(entry)
        listing["slots"][name] = entries
    return listing


def describe(component: Component) -> str:
    """A component's description: the first paragraph of its docstring (or the preset's
    description), whole, so no sentence is cut where the docstring wraps its line."""
    if SLOTS[component.slot].kind == "preset":
        return component.description
    doc = textwrap.dedent(getattr(component.factory, "__doc__", None) or "").strip()
    return " ".join(doc.split("\n\n", 1)[0].split())


def _plain_meta(value: Any) -> Any:
    """Registration metadata as JSON shows it (dataclasses such as `MetricInfo` as objects,
    functions such as a `check_params` by their qualified name)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}".lstrip(".")
    return str(value)


NO_BREAK = "\u00a0"
"""Holds `[distribution version]` together when a description is wrapped."""


def list_plugins(plugins: Plugins, slot: str | None, as_json: bool) -> int:
    listing = plugin_listing(plugins, slot)
    if as_json:
        print(json.dumps(listing, indent=2))
        return 0
    columns = max(60, shutil.get_terminal_size((100, 24)).columns)
    for name, entries in listing["slots"].items():
        slot = SLOTS[name]
        told = f"factory({', '.join([*slot.told, '*, params'])})" if slot.kind == "factory" else slot.kind
        print(f"{name}  ({slot.doc}; {told}; chosen by {slot.recipe_key})")
        width = max((len(e["name"]) for e in entries), default=0)
        for e in entries:
            provider = f"{e['distribution'] or 'unpackaged'} {e['version'] or ''}".strip()
            text = textwrap.fill(
                f"{e['description']}  [{provider.replace(' ', NO_BREAK)}]", columns - 1,
                break_on_hyphens=False, break_long_words=False,
                initial_indent=f"  {e['name']:<{width}}  ", subsequent_indent=" " * (width + 4),
            )
            print(text.replace(NO_BREAK, " "))
            for p in e["params"]:
                default = "required" if p["required"] else f"default {json.dumps(p['default'])}"
                print(f"{' ' * (width + 6)}{p['name']}: {p['type']}  ({default})")
        print()
    return 0
