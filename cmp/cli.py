"""The `cmp` command: `cmp run RECIPE`, `cmp plugins`.

Exit codes: 0 success, 1 a run failed, 2 bad input (recipe, data, plugin, checkpoint).
Bad input is one line on stderr, `cmp: error: <where>: <what>`, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cmp import __version__
from cmp.api.loader import Plugins, load_plugins
from cmp.api.results import BaselineResult, RunResult
from cmp.api.slots import SLOTS
from cmp.config.cells import resolve
from cmp.config.recipe import load_recipe
from cmp.engine.baselines import baseline_specs, compute_baselines
from cmp.engine.build import resolve_device
from cmp.engine.environment import environment
from cmp.engine.executors import run_cells
from cmp.engine.rundir import MANIFEST, RESULT, older_results, read_result, write_json
from cmp.engine.runner import Runner
from cmp.errors import CmpError
from cmp.report import write_report
from cmp.report.summary import format_table, summary_table


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
    run.add_argument("--dry-run", action="store_true", help="list the cells and what is cached; train nothing")
    run.add_argument("--reports", type=Path, default=Path("reports"), help="reports directory (default: reports/)")

    report = sub.add_parser("report", help="write the comparison report of finished runs")
    report.add_argument("runs", type=Path, help="a recipe's runs directory (runs/NAME) or the runs root")
    report.add_argument("--out", type=Path, default=Path("reports"), help="reports directory (default: reports/)")

    plugins = sub.add_parser("plugins", help="list every component per slot with its parameters")
    plugins.add_argument("--slot", choices=sorted(SLOTS), help="only this slot")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
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
    except KeyboardInterrupt:
        print("cmp: interrupted; finished cells are kept and the interrupted one resumes from its checkpoint", file=sys.stderr)
        return 130


def run_command(plugins: Plugins, args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"train.device={args.device}")
    if args.jobs < 1:
        raise CmpError("must be at least 1", where=f"--jobs {args.jobs}")
    recipe = load_recipe(args.recipe, overrides)
    cells = resolve(recipe, plugins.registry)
    runner = Runner(plugins, args.out, echo=_stderr)
    recipe_dir = args.out / recipe.name
    older = older_results(recipe_dir)
    if older:
        _stderr(f"cmp: note: {older} result(s) under {recipe_dir} were written by an older cmp; "
                "their format changed, so those cells are computed again")
    if args.dry_run:
        print(format_table([[c.name, c.key(), runner.plan(c)] for c in cells], ["cell", "key", "plan"]))
        print(f"\n{len(cells)} cell(s); run directories under {recipe_dir}")
        return 0
    for cell in cells:  # every data set is found and checked before any training starts
        runner.data_for(cell.data)
    _stderr(f"cmp: {recipe.name}: {len(cells)} cell(s) into {recipe_dir}")
    results = run_cells(runner, cells, args.jobs, args.plugins, args.plugin_module, on_done=_report_cell)
    baselines = compute_baselines(runner, baseline_specs(cells))
    manifest = {
        "recipe": recipe.name, "description": recipe.model.description,
        "command": args.command_line, "runs_dir": str(recipe_dir),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "environment": environment(resolve_device(cells[0].train.device)),
        "cells": [c.key() for c in cells], "baselines": [json.loads(b.to_json()) for b in baselines],
    }
    write_json(recipe_dir / MANIFEST, manifest)
    paths = write_report(recipe.name, results, baselines, args.reports / recipe.name, manifest, recipe.model.description,
                         hooks=plugins.hook)
    print()
    print(summary_table(results, baselines))
    print(f"\nreport: {paths['markdown']} (and report.html, results.csv)\nruns:   {recipe_dir}")
    return 0 if all(r.ok for r in results) else 1


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
        baselines = [BaselineResult.model_validate(b) for b in manifest.get("baselines", [])]
        paths = write_report(name, results, baselines, args.out / name, manifest or None, manifest.get("description"),
                             hooks=plugins.hook)
        print(f"report: {paths['markdown']} ({len(results)} cells)")
    return 0


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
                "description": component.description,
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


def _plain_meta(value: Any) -> Any:
    """Registration metadata as JSON shows it (dataclasses such as `MetricInfo` as objects)."""
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else str(value)


def list_plugins(plugins: Plugins, slot: str | None, as_json: bool) -> int:
    listing = plugin_listing(plugins, slot)
    if as_json:
        print(json.dumps(listing, indent=2))
        return 0
    for name, entries in listing["slots"].items():
        slot = SLOTS[name]
        told = f"factory({', '.join([*slot.told, '*, params'])})" if slot.kind == "factory" else slot.kind
        print(f"{name}  ({slot.doc}; {told}; chosen by {slot.recipe_key})")
        for e in entries:
            provider = f"{e['distribution'] or 'unpackaged'} {e['version'] or ''}".strip()
            print(f"  {e['name']:<16} {e['description']}  [{provider}]")
            for p in e["params"]:
                default = "required" if p["required"] else f"default {json.dumps(p['default'])}"
                print(f"      {p['name']}: {p['type']}  ({default})")
        print()
    return 0
